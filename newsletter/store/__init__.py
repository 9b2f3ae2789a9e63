"""The SQLite store. Only this package knows table names; each module holds one job's queries."""

from __future__ import annotations

from .base import Clock, Part, StoreBase, utc_now
from .bounces import BounceRecord, BounceStore
from .digests import DigestStore, Saved, content_hash
from .ledger import LedgerStore
from .signups import SignupStore
from .subscribers import SubscriberStore

__all__ = [
    "BounceRecord",
    "Clock",
    "Part",
    "Saved",
    "Store",
    "StoreBase",
    "content_hash",
    "utc_now",
]


class Store(DigestStore, SubscriberStore, LedgerStore, SignupStore, BounceStore):
    """The whole store: digests, subscribers, the delivery ledger, sign-ups and bounces."""
