"""The web service: the built site with HTTP caching, unsubscribe, preferences and sign-up."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
