"""Subscribers: import, lookup and status changes (filled in by the subscribers issue)."""

from __future__ import annotations

from .base import StoreBase


class SubscriberStore(StoreBase):
    """Subscribers and their filters."""
