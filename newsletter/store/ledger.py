"""The delivery ledger: one row per (digest, subscriber) (filled in by the delivery issue)."""

from __future__ import annotations

from .base import StoreBase


class LedgerStore(StoreBase):
    """Claims and outcomes of deliveries."""
