"""Revenue (17.4) and Order Completed (17.5)."""

from __future__ import annotations

import pytest

from .helpers import ANON, MID, TS_MS, USER, message, only, run

REVENUE_FIELDS = {"revenue", "price", "quantity", "productId", "revenueType"}


def revenue_of(b: dict) -> dict:
    return {k: b[k] for k in REVENUE_FIELDS if k in b}


@pytest.mark.parametrize("event, properties, v2, expected", [
    # V2: price falls back to revenue with quantity 1; quantity comes with a given price.
    ("Song Played", {"revenue": 20}, True, {"revenue": 20, "price": 20, "quantity": 1}),
    ("Song Played", {"revenue": 20, "price": 5, "quantity": 4}, True, {"revenue": 20, "price": 5, "quantity": 4}),
    ("Song Played", {"revenue": 20, "price": 5}, True, {"revenue": 20, "price": 5, "quantity": 1}),
    ("Song Played", {"revenue": 20, "quantity": 4}, True, {"revenue": 20, "price": 20, "quantity": 1}),
    ("Song Played", {"revenue": 20, "productId": "p-1"}, True,
     {"revenue": 20, "price": 20, "quantity": 1, "productId": "p-1"}),
    ("Song Played", {"revenue": 20, "product_id": "p-1"}, True,
     {"revenue": 20, "price": 20, "quantity": 1, "productId": "p-1"}),
    ("Song Played", {"revenue": 20, "revenueType": "Refund"}, True,
     {"revenue": 20, "price": 20, "quantity": 1, "revenueType": "Refund"}),
    ("Song Played", {"revenue": 20, "revenue_type": "Refund"}, True,
     {"revenue": 20, "price": 20, "quantity": 1, "revenueType": "Refund"}),
    ("Song Played", {"revenue": "$1,234.50"}, True, {"revenue": 1234.5, "price": 1234.5, "quantity": 1}),
    ("Song Played", {"revenue": " 12 "}, True, {"revenue": 12, "price": 12, "quantity": 1}),
    ("Song Played", {"revenue": -5}, True, {"revenue": -5, "price": -5, "quantity": 1}),
    ("Product Purchased", {"revenue": 20}, True, {"revenue": 20, "price": 20, "quantity": 1, "revenueType": "Purchase"}),
    ("Order Completed", {"revenue": 20}, True, {"revenue": 20, "price": 20, "quantity": 1, "revenueType": "Purchase"}),
    ("Completed Order", {"total": 30}, True, {"revenue": 30, "price": 30, "quantity": 1, "revenueType": "Purchase"}),
    # Legacy logRevenue: no price fallback, no default revenueType.
    ("Song Played", {"revenue": 20}, False, {"revenue": 20, "quantity": 1}),
    ("Song Played", {"revenue": 20, "price": 5, "quantity": 4, "productId": "p-1"}, False,
     {"revenue": 20, "quantity": 4, "productId": "p-1"}),
    ("Order Completed", {"revenue": 20}, False, {"revenue": 20, "quantity": 1}),
    ("Order Completed", {"revenue": 20, "revenueType": "Sale"}, False,
     {"revenue": 20, "quantity": 1, "revenueType": "Sale"}),
])
def test_revenue_fields_with_use_log_revenue_v2_on_and_off(event, properties, v2, expected):
    b = only(message("track", event=event, properties=properties), use_log_revenue_v2=v2)
    assert revenue_of(b) == expected
    assert type(b["quantity"]) is int


@pytest.mark.parametrize("properties", [
    {"price": 5, "quantity": 4},
    {"revenue": 0},
    {"revenue": "0"},
    {"revenue": "free"},
    {"revenue": None},
    {"total": 30},  # total counts only on Order Completed / Completed Order
])
def test_price_and_quantity_alone_and_zero_or_unreadable_revenue_are_not_revenue(properties):
    b = only(message("track", event="Song Played", properties=properties))
    assert REVENUE_FIELDS.isdisjoint(b)


def test_revenue_event_properties_drop_price_quantity_product_id_and_revenue_type_but_keep_revenue():
    props = {"revenue": 20, "price": 5, "quantity": 4, "productId": "p", "revenueType": "r", "sku": "s"}
    assert only(message("track", properties=props))["event_properties"] == {"revenue": 20, "sku": "s"}
    # Without revenue nothing is removed.
    props = {"price": 5, "quantity": 4, "productId": "p"}
    assert only(message("track", properties=props))["event_properties"] == props


PRODUCTS = [
    {"productId": "p-1", "sku": "S1", "name": "Shoe", "price": 10, "quantity": 2, "category": "c", "color": "red"},
    {"product_id": "p-2", "name": "Hat", "price": "5", "revenueType": "Gift"},
    {"productId": "p-3", "name": "Sticker"},
]
ORDER = {"order_id": "o-1", "revenue": 25, "total": 30, "currency": "EUR", "products": PRODUCTS}


def order(**settings) -> list[dict]:
    return run(message("track", event="Order Completed", properties=ORDER), **settings)


def test_order_completed_default_is_order_with_revenue_then_product_purchased_per_product_without_revenue():
    out = order()
    assert [o["body"]["event_type"] for o in out] == ["Order Completed"] + ["Product Purchased"] * 3
    first = out[0]["body"]
    assert first["event_properties"] == {"order_id": "o-1", "revenue": 25, "total": 30, "currency": "EUR"}
    assert revenue_of(first) == {"revenue": 25, "price": 25, "quantity": 1, "revenueType": "Purchase"}
    for o, product in zip(out[1:], PRODUCTS):
        assert o["body"]["event_properties"] == product
        assert REVENUE_FIELDS.isdisjoint(o["body"])
    for o in out:
        b = o["body"]
        assert (b["user_id"], b["device_id"], b["time"]) == (USER, ANON, TS_MS)
    assert [o["body"]["insert_id"] for o in out] == [MID, f"{MID}-1", f"{MID}-2", f"{MID}-3"]


def test_order_completed_with_track_revenue_per_product_puts_revenue_on_each_product():
    out = order(track_revenue_per_product=True)
    assert len(out) == 4
    assert {"price", "quantity", "productId", "revenueType"}.isdisjoint(out[0]["body"])
    assert "revenue" not in out[0]["body"]
    assert out[0]["body"]["event_properties"]["revenue"] == 25  # may stay as a plain property
    assert revenue_of(out[1]["body"]) == {"revenue": 20, "price": 10, "quantity": 2, "productId": "p-1",
                                          "revenueType": "Purchase"}
    assert revenue_of(out[2]["body"]) == {"revenue": 5, "price": 5, "quantity": 1, "productId": "p-2",
                                          "revenueType": "Gift"}
    assert REVENUE_FIELDS.isdisjoint(out[3]["body"])  # a product without price gets no revenue fields


def test_order_completed_per_product_revenue_type_falls_back_to_the_orders_revenue_type():
    props = dict(ORDER, revenueType="Sale")
    out = run(message("track", event="Order Completed", properties=props), track_revenue_per_product=True)
    assert [o["body"].get("revenueType") for o in out] == [None, "Sale", "Gift", None]


def test_order_completed_with_track_products_once_is_one_event_with_products_and_order_revenue():
    out = order(track_products_once=True)
    assert len(out) == 1
    b = out[0]["body"]
    assert b["insert_id"] == MID
    assert revenue_of(b) == {"revenue": 25, "price": 25, "quantity": 1, "revenueType": "Purchase"}
    assert b["event_properties"]["products"] == [
        {"productId": "p-1", "sku": "S1", "name": "Shoe", "price": 10, "quantity": 2, "category": "c"},
        {"product_id": "p-2", "name": "Hat", "price": "5"},
        {"productId": "p-3", "name": "Sticker"},
    ]


def test_order_completed_with_products_once_and_revenue_per_product_sends_products_event_plus_product_revenue():
    out = order(track_products_once=True, track_revenue_per_product=True)
    assert [o["body"]["event_type"] for o in out] == ["Order Completed"] + ["Product Purchased"] * 3
    assert "products" in out[0]["body"]["event_properties"]
    assert "revenue" not in out[0]["body"]
    assert [o["body"].get("revenue") for o in out[1:]] == [20, 5, None]
    ids = [o["body"]["insert_id"] for o in out]
    assert ids[0] == MID and len(set(ids)) == 4


def test_order_completed_without_products_is_one_event_and_total_is_the_revenue_without_revenue():
    out = run(message("track", event="Order Completed", properties={"total": 30, "order_id": "o"}))
    assert len(out) == 1 and out[0]["body"]["revenue"] == 30 and out[0]["body"]["price"] == 30


@pytest.mark.parametrize("event", ["Order Completed", "order completed", "Completed Order", "order_completed"])
def test_order_completed_names_in_any_case_split_products(event):
    out = run(message("track", event=event, properties=ORDER))
    assert len(out) == 4 and out[0]["body"]["event_type"] == event


def test_other_events_with_products_stay_one_event():
    out = run(message("track", event="Cart Viewed", properties={"products": PRODUCTS}))
    assert len(out) == 1 and out[0]["body"]["event_properties"]["products"] == PRODUCTS
