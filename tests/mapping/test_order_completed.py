"""Order Completed / Completed Order with products (section 17.5)."""

from __future__ import annotations

import pytest

from .helpers import ANON, MID, TS_MS, USER, run, track

PRODUCTS = [
    {"product_id": "p-1", "sku": "S1", "name": "Shoe", "price": 10, "quantity": 2, "brand": "X", "gone": None},
    {"productId": "p-2", "name": "Hat", "price": "5.5", "revenueType": "Gift"},
    {"sku": "S3", "name": "Free sample"},
]
ORDER = {"order_id": "o-1", "revenue": 25.5, "total": 30, "currency": "USD", "products": PRODUCTS}
REVENUE_FIELDS = ("revenue", "price", "quantity", "productId", "revenueType")


def order(event: str = "Order Completed", properties: dict | None = None) -> dict:
    return track(event, properties=ORDER if properties is None else properties)


def bodies(message: dict, **settings) -> list[dict]:
    return [op["body"] for op in run(message, **settings)]


def revenue_of(body: dict) -> dict:
    return {k: body[k] for k in REVENUE_FIELDS if k in body}


@pytest.mark.parametrize("event", ["Order Completed", "Completed Order", "order_completed", "ORDER COMPLETED"])
def test_order_completed_is_one_order_event_then_one_product_purchased_per_product(event):
    events = bodies(order(event))
    assert [b["event_type"] for b in events] == [event] + ["Product Purchased"] * 3


def test_order_completed_events_share_user_device_and_time():
    for body in bodies(order()):
        assert (body["user_id"], body["device_id"], body["time"]) == (USER, ANON, TS_MS)


def test_order_completed_keeps_the_bare_message_id_and_products_get_message_id_n():
    assert [b["insert_id"] for b in bodies(order())] == [MID, f"{MID}-1", f"{MID}-2", f"{MID}-3"]


def test_order_completed_carries_the_order_revenue_and_every_property_except_products():
    first = bodies(order())[0]
    assert revenue_of(first) == {"revenue": 25.5, "price": 25.5, "quantity": 1, "revenueType": "Purchase"}
    assert first["event_properties"] == {"order_id": "o-1", "revenue": 25.5, "total": 30, "currency": "USD"}


def test_order_completed_product_purchased_properties_are_exactly_the_product_and_carry_no_revenue():
    products = bodies(order())[1:]
    assert [b["event_properties"] for b in products] == [
        {"product_id": "p-1", "sku": "S1", "name": "Shoe", "price": 10, "quantity": 2, "brand": "X"},
        {"productId": "p-2", "name": "Hat", "price": "5.5", "revenueType": "Gift"},
        {"sku": "S3", "name": "Free sample"},
    ]
    assert all(revenue_of(b) == {} for b in products)


def test_order_completed_without_revenue_uses_total():
    first = bodies(order(properties={"total": 30, "products": PRODUCTS}))[0]
    assert first["revenue"] == 30.0 and first["price"] == 30.0


def test_order_completed_without_products_is_one_revenue_event():
    events = bodies(order(properties={"total": 12, "products": []}))
    assert len(events) == 1 and events[0]["revenue"] == 12.0 and events[0]["insert_id"] == MID


def test_order_completed_with_track_revenue_per_product_puts_revenue_on_each_product():
    events = bodies(order(), track_revenue_per_product=True)
    assert revenue_of(events[0]) == {}
    assert events[0]["event_properties"]["revenue"] == 25.5
    assert [revenue_of(b) for b in events[1:]] == [
        {"revenue": 20.0, "price": 10.0, "quantity": 2, "productId": "p-1", "revenueType": "Purchase"},
        {"revenue": 5.5, "price": 5.5, "quantity": 1, "productId": "p-2", "revenueType": "Gift"},
        {},
    ]


def test_order_completed_per_product_revenue_type_falls_back_to_the_orders():
    events = bodies(order(properties={"revenueType": "Subscription", "products": [{"price": 3}]}),
                    track_revenue_per_product=True)
    assert events[1]["revenueType"] == "Subscription"


def test_order_completed_per_product_revenue_without_log_revenue_v2_has_no_price():
    events = bodies(order(), track_revenue_per_product=True, use_log_revenue_v2=False)
    assert revenue_of(events[1]) == {"revenue": 20.0, "quantity": 2, "productId": "p-1", "revenueType": "Purchase"}


def test_order_completed_with_track_products_once_is_one_event_with_the_products_and_order_revenue():
    events = bodies(order(), track_products_once=True)
    assert len(events) == 1
    assert events[0]["insert_id"] == MID
    assert revenue_of(events[0]) == {"revenue": 25.5, "price": 25.5, "quantity": 1, "revenueType": "Purchase"}
    assert events[0]["event_properties"]["products"] == [
        {"product_id": "p-1", "sku": "S1", "name": "Shoe", "price": 10, "quantity": 2},
        {"productId": "p-2", "name": "Hat", "price": "5.5"},
        {"sku": "S3", "name": "Free sample"},
    ]


def test_order_completed_with_products_once_and_revenue_per_product_sends_products_event_and_product_revenue():
    events = bodies(order(), track_products_once=True, track_revenue_per_product=True)
    assert [b["event_type"] for b in events] == ["Order Completed"] + ["Product Purchased"] * 3
    assert revenue_of(events[0]) == {}
    assert len(events[0]["event_properties"]["products"]) == 3
    assert [b.get("revenue") for b in events[1:]] == [20.0, 5.5, None]
    assert len({b["insert_id"] for b in events}) == 4


def test_order_completed_without_message_id_sends_no_insert_ids():
    assert all("insert_id" not in b for b in bodies(track("Order Completed", properties=ORDER, messageId=...)))


def test_other_events_with_products_stay_one_event_with_their_products():
    events = bodies(track("Cart Viewed", properties={"products": PRODUCTS[:1]}))
    assert len(events) == 1
    assert events[0]["event_properties"]["products"][0]["product_id"] == "p-1"
