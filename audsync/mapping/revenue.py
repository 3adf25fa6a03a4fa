"""Revenue: when a track is a revenue event and which revenue fields it carries (17.4), and the
per-product fields of track_revenue_per_product (17.5)."""

from __future__ import annotations

import math
from typing import Any

from ._common import invalid, shown

# Normalized (lower case, no spaces or underscores) names of the events facade treats as orders.
_ORDERS = frozenset({"ordercompleted", "completedorder"})
_PURCHASES = _ORDERS | {"productpurchased"}
# Revenue bookkeeping keys that leave event_properties once they became revenue fields (BY);
# `revenue` itself stays (BY 3.1.0 parity rule).
REVENUE_KEYS = frozenset({"price", "quantity", "productId", "product_id", "revenueType", "revenue_type"})


def _normalized(event: str) -> str:
    return event.replace(" ", "").replace("_", "").lower()


def is_order(event: str) -> bool:
    """Order Completed / Completed Order, in any case, with spaces or underscores."""
    return 12 <= len(event) <= 40 and _normalized(event) in _ORDERS


def is_purchase(event: str) -> bool:
    return _normalized(event) in _PURCHASES


def amount(value: Any) -> float | None:
    """A money amount: a number, or a numeric string with '$', ',' and spaces ignored."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            number = float(value.replace("$", "").replace(",", "").replace(" ", ""))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def quantity(value: Any, field: str) -> int:
    """A quantity as Amplitude's integer field; absent or unreadable counts as 1."""
    number = amount(value)
    if number is None:
        return 1
    if abs(number) >= 2**63:
        raise invalid(field, f"{shown(value)} is out of the 64-bit integer range")
    return int(round(number))


def _label(props: dict, *keys: str) -> str | None:
    for key in keys:
        value = props.get(key)
        if value.__class__ is str:
            if value:
                return value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return None


def order_amount(properties: dict, order: bool) -> float | None:
    """The amount that makes a track a revenue event: `revenue`, or for orders `total`; 0 and
    anything unreadable mean no revenue. price + quantity alone do not (peers unanimous)."""
    value = amount(properties.get("revenue"))
    if not value and order:
        value = amount(properties.get("total"))
    return value or None


def revenue_fields(properties: dict, total: float, purchase: bool, log_revenue_v2: bool) -> dict:
    """Revenue fields of an event whose amount is known.

    V2: price = properties.price, else the amount; quantity = properties.quantity when the price
    came from properties.price (default 1), else 1; revenueType defaults to Purchase on order and
    product events. Legacy (use_log_revenue_v2 off): revenue, quantity, productId and a given
    revenueType only, as logRevenue(amount, quantity, productId) sends them."""
    fields: dict[str, Any] = {"revenue": total}
    revenue_type = _label(properties, "revenueType", "revenue_type")
    if log_revenue_v2:
        price = amount(properties.get("price"))
        if price is not None:
            fields["price"] = price
            fields["quantity"] = quantity(properties.get("quantity"), "properties.quantity")
        else:
            fields["price"] = total
            fields["quantity"] = 1
        if revenue_type is None and purchase:
            revenue_type = "Purchase"
    else:
        fields["quantity"] = quantity(properties.get("quantity"), "properties.quantity")
    product_id = _label(properties, "productId", "product_id")
    if product_id is not None:
        fields["productId"] = product_id
    if revenue_type is not None:
        fields["revenueType"] = revenue_type
    return fields


def product_revenue(product: dict, index: int, order_properties: dict, log_revenue_v2: bool) -> dict | None:
    """track_revenue_per_product: a product with a price carries price, quantity (default 1),
    revenue = price x quantity, productId and revenueType (the product's, else the order's, else
    Purchase); a product without a price carries none."""
    price = amount(product.get("price"))
    if price is None:
        return None
    count = quantity(product.get("quantity"), f"properties.products[{index}].quantity")
    total = price * count
    if not math.isfinite(total):
        raise invalid(f"properties.products[{index}]", "price x quantity is beyond a number Amplitude can store")
    fields: dict[str, Any] = {"revenue": total}
    if log_revenue_v2:
        fields["price"] = price
    fields["quantity"] = count
    product_id = _label(product, "productId", "product_id")
    if product_id is not None:
        fields["productId"] = product_id
    fields["revenueType"] = (_label(product, "revenueType", "revenue_type")
                             or _label(order_properties, "revenueType", "revenue_type") or "Purchase")
    return fields
