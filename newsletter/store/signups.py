"""Pending sign-ups awaiting confirmation (filled in by the service issue)."""

from __future__ import annotations

from .base import StoreBase


class SignupStore(StoreBase):
    """Sign-ups not yet confirmed."""
