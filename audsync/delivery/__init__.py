"""Delivery to Amplitude: batching by its limits, the response policy, the HTTP transport."""

from .deliverer import DELIVERED, REJECTED, UNDELIVERED, Bundle, Deliverer, DeliveryStats, Outcome, Outcomes, Status
from .transport import url_for

__all__ = ["DELIVERED", "REJECTED", "UNDELIVERED", "Bundle", "Deliverer", "DeliveryStats", "Outcome", "Outcomes", "Status", "url_for"]
