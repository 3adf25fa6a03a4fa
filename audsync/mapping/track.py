"""Track calls: one event (with revenue fields on a revenue event), and Order Completed with its
products (17.3-17.5)."""

from __future__ import annotations

from ._common import invalid, text_field, type_name
from ._props import clean_props
from ._tables import Tables
from .events import EventBase, event_properties
from .revenue import REVENUE_KEYS, is_order, is_purchase, order_amount, product_revenue, revenue_fields

PRODUCT_PURCHASED = "Product Purchased"
# What track_products_once keeps of each product (AJS).
_PRODUCT_KEYS = ("productId", "product_id", "sku", "name", "price", "quantity", "category")


def event_name(message: dict) -> str:
    name = text_field(message.get("event"), "event")
    if name is None or not name.strip():
        raise invalid("event", "a track call needs an event name")
    return name


def _without_revenue_keys(props: dict) -> dict:
    return {k: v for k, v in props.items() if k not in REVENUE_KEYS}


def _products(properties: dict) -> list[tuple[int, dict]]:
    products = properties.get("products")
    if products is None:
        return []
    if not isinstance(products, list):
        raise invalid("properties.products", f"must be a list of objects, not {type_name(products)}")
    out = []
    for i, product in enumerate(products):
        if product is None:
            continue
        if not isinstance(product, dict):
            raise invalid(f"properties.products[{i}]", f"must be an object, not {type_name(product)}")
        out.append((i, product))
    return out


def track(message: dict, properties: dict, context: dict, base: EventBase, tables: Tables) -> list[dict]:
    event = event_name(message)
    order = is_order(event)
    props = event_properties(message, properties, context, tables)
    total = order_amount(properties, order) if properties else None
    products = _products(properties) if order else None
    settings = tables.settings

    if not products:
        if total is None:
            return [base.make(event, props)]
        return [base.make(event, _without_revenue_keys(props),
                          revenue=revenue_fields(properties, total, order or is_purchase(event),
                                                 settings.use_log_revenue_v2))]

    per_product = settings.track_revenue_per_product
    once = settings.track_products_once
    props.pop("products", None)
    if once:
        props["products"] = [clean_props({k: p[k] for k in _PRODUCT_KEYS if k in p}, 3) for _, p in products]
    order_revenue = None
    if total is not None and not per_product:
        order_revenue = revenue_fields(properties, total, True, settings.use_log_revenue_v2)
        props = _without_revenue_keys(props)
    operations = [base.make(event, props, revenue=order_revenue)]
    if once and not per_product:
        return operations
    # One Product Purchased per product, in order; insert_id messageId-n (1-based, RS), so
    # Amplitude's dedup never takes a product for its order or for another product.
    for n, (index, product) in enumerate(products, start=1):
        revenue = product_revenue(product, index, properties, settings.use_log_revenue_v2) if per_product else None
        operations.append(base.make(PRODUCT_PURCHASED, clean_props(product), insert_suffix=str(n), revenue=revenue))
    return operations
