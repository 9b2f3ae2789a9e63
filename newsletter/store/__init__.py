"""The SQLite store. Only this package knows table names; each module holds one job's queries."""

from __future__ import annotations

from .base import Clock, Part, StoreBase, utc_now
from .bounces import BounceRecord, BounceStore
from .digests import DigestStore, Saved, content_hash
from .erasure import Erased, erased_key
from .ledger import LedgerStore
from .signups import SignupStore
from .subscribers import SubscriberStore

__all__ = [
    "BounceRecord",
    "Clock",
    "Erased",
    "Part",
    "Saved",
    "Store",
    "StoreBase",
    "content_hash",
    "erased_key",
    "utc_now",
]


class Store(DigestStore, SubscriberStore, LedgerStore, SignupStore, BounceStore):
    """The whole store: digests, subscribers, the delivery ledger, sign-ups, bounces and
    erased addresses."""
