"""Track calls: one event, revenue fields, and Order Completed with its products (17.3-17.5)."""

from __future__ import annotations

import math
import re
from typing import Any

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ._common import clean_props, type_name
from .events import EventBase, add_message_fields, event_name, event_properties

_ORDER_COMPLETED = re.compile(r"^\s*(order[ _]?completed|completed[ _]?order)\s*$", re.IGNORECASE)
_PURCHASE_EVENTS = re.compile(r"^\s*(order[ _]?completed|completed[ _]?order|product[ _]?purchased)\s*$",
                              re.IGNORECASE)
# Revenue bookkeeping keys that leave event_properties once they became revenue fields (BY).
_REVENUE_KEYS = ("price", "quantity", "productId", "product_id", "revenueType", "revenue_type")
# What track_products_once keeps of each product (AJS).
_PRODUCT_KEYS = ("productId", "product_id", "sku", "name", "price", "quantity", "category")


def amount(value: Any) -> float | None:
    """A revenue amount: a number, or a numeric string with '$', ',' and spaces ignored."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.replace("$", "").replace(",", "").replace(" ", "")
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _quantity(value: Any) -> int:
    number = amount(value)
    return int(round(number)) if number is not None else 1


def _text(props: dict, *keys: str) -> str | None:
    for key in keys:
        value = props.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    return None


def revenue_fields(props: dict, order_amount: float, event: str, settings: AmplitudeSettings) -> dict:
    """Revenue fields of one event whose amount is known (17.4)."""
    fields: dict[str, Any] = {"revenue": order_amount}
    product_id = _text(props, "productId", "product_id")
    revenue_type = _text(props, "revenueType", "revenue_type")
    price = amount(props.get("price"))
    if settings.use_log_revenue_v2:
        if price is not None:
            fields["price"] = price
            fields["quantity"] = _quantity(props.get("quantity"))
        else:
            fields["price"] = order_amount
            fields["quantity"] = 1
        if revenue_type is None and _PURCHASE_EVENTS.match(event):
            revenue_type = "Purchase"
    else:
        fields["quantity"] = _quantity(props.get("quantity"))
    if product_id is not None:
        fields["productId"] = product_id
    if revenue_type is not None:
        fields["revenueType"] = revenue_type
    return fields


def _order_amount(props: dict, is_order: bool) -> float | None:
    value = amount(props.get("revenue"))
    if (value is None or value == 0) and is_order:
        value = amount(props.get("total"))
    return value if value else None


def _strip_revenue_keys(props: dict) -> dict:
    return {k: v for k, v in props.items() if k not in _REVENUE_KEYS}


def _products(properties: dict) -> list[dict] | None:
    products = properties.get("products")
    if products is None:
        return None
    if not isinstance(products, list):
        raise ValidationError(f"properties.products: must be a list, not {type_name(products)}",
                              field="properties.products")
    for i, product in enumerate(products):
        if not isinstance(product, dict):
            raise ValidationError(f"properties.products[{i}]: must be an object, not {type_name(product)}",
                                  field=f"properties.products[{i}]")
    return products


def _product_revenue(product: dict, order_props: dict, settings: AmplitudeSettings) -> dict | None:
    price = amount(product.get("price"))
    if price is None:
        return None
    quantity = _quantity(product.get("quantity"))
    fields: dict[str, Any] = {"price": price, "quantity": quantity, "revenue": price * quantity}
    product_id = _text(product, "productId", "product_id", "sku")
    if product_id is not None:
        fields["productId"] = product_id
    fields["revenueType"] = (_text(product, "revenueType", "revenue_type")
                             or _text(order_props, "revenueType", "revenue_type") or "Purchase")
    if not settings.use_log_revenue_v2:
        fields.pop("price")
    return fields


def track(message: dict, base: EventBase, properties: dict, settings: AmplitudeSettings) -> list[dict]:
    event = event_name(message)
    is_order = bool(_ORDER_COMPLETED.match(event))
    products = _products(properties) if is_order else None
    props = add_message_fields(message, message_context(message), event_properties(properties, settings), settings)
    order_amount = _order_amount(properties, is_order)

    if not products:
        if order_amount is None:
            return [base.make(event, props)]
        return [base.make(event, _strip_revenue_keys(props),
                          revenue=revenue_fields(properties, order_amount, event, settings))]

    per_product = settings.track_revenue_per_product
    order_props = {k: v for k, v in props.items() if k != "products"}
    if settings.track_products_once:
        order_props["products"] = [clean_props({k: p[k] for k in _PRODUCT_KEYS if k in p}) for p in products]
    order_revenue = None
    if order_amount is not None and not per_product:
        order_revenue = revenue_fields(properties, order_amount, event, settings)
        order_props = _strip_revenue_keys(order_props)
    operations = [base.make(event, order_props, revenue=order_revenue)]
    if settings.track_products_once and not per_product:
        return operations
    for n, product in enumerate(products, start=1):
        revenue = _product_revenue(product, properties, settings) if per_product else None
        operations.append(base.make("Product Purchased", clean_props(product), insert_suffix=str(n),
                                    revenue=revenue))
    return operations


def message_context(message: dict) -> dict:
    context = message.get("context")
    return context if isinstance(context, dict) else {}
