"""Revenue on track events (section 17.4), with use_log_revenue_v2 on (default) and off."""

from __future__ import annotations

import pytest

from .helpers import only, track

REVENUE_FIELDS = ("revenue", "price", "quantity", "productId", "revenueType")


def revenue_of(body: dict) -> dict:
    return {k: body[k] for k in REVENUE_FIELDS if k in body}


@pytest.mark.parametrize("properties, expected", [
    ({"revenue": 10}, {"revenue": 10.0, "price": 10.0, "quantity": 1}),
    ({"revenue": "$1,234.50"}, {"revenue": 1234.5, "price": 1234.5, "quantity": 1}),
    ({"revenue": " 12.5 "}, {"revenue": 12.5, "price": 12.5, "quantity": 1}),
    ({"revenue": 30, "price": 10, "quantity": 3}, {"revenue": 30.0, "price": 10.0, "quantity": 3}),
    ({"revenue": 30, "price": 10}, {"revenue": 30.0, "price": 10.0, "quantity": 1}),
    ({"revenue": 30, "quantity": 3}, {"revenue": 30.0, "price": 30.0, "quantity": 1}),
    ({"revenue": -5}, {"revenue": -5.0, "price": -5.0, "quantity": 1}),
    ({"revenue": 9, "productId": "p-1", "revenueType": "Refund"},
     {"revenue": 9.0, "price": 9.0, "quantity": 1, "productId": "p-1", "revenueType": "Refund"}),
    ({"revenue": 9, "product_id": 42, "revenue_type": "Tax"},
     {"revenue": 9.0, "price": 9.0, "quantity": 1, "productId": "42", "revenueType": "Tax"}),
])
def test_revenue_v2_fields_follow_revenue_price_and_quantity(properties, expected):
    assert revenue_of(only(track("Song Purchased", properties=properties))) == expected


@pytest.mark.parametrize("properties", [
    {"price": 10, "quantity": 2},
    {"revenue": 0},
    {"revenue": "0.00"},
    {"revenue": "free"},
    {"revenue": None},
    {"revenue": True},
    {"total": 50},
])
def test_revenue_is_logged_only_for_a_nonzero_revenue(properties):
    body = only(track("Song Purchased", properties=properties))
    assert revenue_of(body) == {}
    assert body.get("event_properties", {}) == {k: v for k, v in properties.items() if v is not None}


def test_revenue_event_properties_drop_revenue_bookkeeping_but_keep_revenue():
    body = only(track("Song Purchased", properties={
        "revenue": 20, "price": 10, "quantity": 2, "productId": "p", "product_id": "p",
        "revenueType": "t", "revenue_type": "t", "album": "A"}))
    assert body["event_properties"] == {"revenue": 20, "album": "A"}


@pytest.mark.parametrize("event, revenue_type", [
    ("Product Purchased", "Purchase"),
    ("product_purchased", "Purchase"),
    ("Order Completed", "Purchase"),
    ("Song Purchased", None),
])
def test_revenue_type_defaults_to_purchase_only_on_order_and_product_events(event, revenue_type):
    assert only(track(event, properties={"revenue": 5})).get("revenueType") == revenue_type


@pytest.mark.parametrize("properties, expected", [
    ({"revenue": 30, "price": 10, "quantity": 3}, {"revenue": 30.0, "quantity": 3}),
    ({"revenue": 30}, {"revenue": 30.0, "quantity": 1}),
    ({"revenue": 30, "productId": "p-1", "revenueType": "Refund"},
     {"revenue": 30.0, "quantity": 1, "productId": "p-1", "revenueType": "Refund"}),
])
def test_revenue_without_log_revenue_v2_sends_revenue_quantity_product_and_no_price(properties, expected):
    assert revenue_of(only(track("Song Purchased", properties=properties), use_log_revenue_v2=False)) == expected


def test_revenue_without_log_revenue_v2_has_no_default_revenue_type():
    body = only(track("Product Purchased", properties={"revenue": 5}), use_log_revenue_v2=False)
    assert "revenueType" not in body


def test_revenue_quantity_is_an_integer():
    body = only(track("Song Purchased", properties={"revenue": 10, "price": 5, "quantity": "2"}))
    assert body["quantity"] == 2 and isinstance(body["quantity"], int)
