"""newsletter: feeds, a web archive and per-subscriber emails from daily AI paper digests.

The pipeline, in the order the folders read: a digest enters through `digest/` (markdown to
papers) into the `store/`; `audience/` decides who reads which papers; `publish/` writes the
feeds and the archive; `mail/` renders each subscriber's email; `delivery/` hands it to SMTP,
exactly once. `cli/` and `web/` are thin doors into these.

    import newsletter

    settings = newsletter.load_settings()
    with newsletter.Store(settings.db) as store:
        newsletter.ingest_paths(store, ["digests/"])
        newsletter.build_site(store, settings=settings)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import speedups

speedups.install()  # the compiled compose path only while it matches its sources

if TYPE_CHECKING:
    from .audience.match import Pick, select_papers
    from .config import Settings, load_settings
    from .delivery.pipeline import DeliveryReport, Sender, deliver
    from .digest.ingest import ingest_paths
    from .digest.parse import parse_digest
    from .errors import (
        ConfigError,
        DeliveryError,
        DigestError,
        NewsletterError,
        PermanentFailure,
        StoreError,
        SubscriberError,
        TemplateError,
        TemporaryFailure,
    )
    from .mail.compose import Composer
    from .model import Digest, Filters, Paper, Section, Subscriber
    from .publish.build import build_site
    from .store import Store

# Each public name and the module it lives in. They are imported on first use (PEP 562), so
# `import newsletter` (and every CLI command, which imports a part of it) does not load the
# whole pipeline: a send never imports the site builder, DNS checks or bounce parsing.
_WHERE = {
    "Pick": "audience.match",
    "select_papers": "audience.match",
    "Settings": "config",
    "load_settings": "config",
    "DeliveryReport": "delivery.pipeline",
    "Sender": "delivery.pipeline",
    "deliver": "delivery.pipeline",
    "ingest_paths": "digest.ingest",
    "parse_digest": "digest.parse",
    "ConfigError": "errors",
    "DeliveryError": "errors",
    "DigestError": "errors",
    "NewsletterError": "errors",
    "PermanentFailure": "errors",
    "StoreError": "errors",
    "SubscriberError": "errors",
    "TemplateError": "errors",
    "TemporaryFailure": "errors",
    "Composer": "mail.compose",
    "Digest": "model",
    "Filters": "model",
    "Paper": "model",
    "Section": "model",
    "Subscriber": "model",
    "build_site": "publish.build",
    "Store": "store",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("newsletter")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0.0.0+unknown"
    elif name in _WHERE:
        found = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'newsletter' has no attribute {name!r}")
    globals()[name] = found  # the next lookup finds it directly
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Composer",
    "ConfigError",
    "DeliveryError",
    "DeliveryReport",
    "Digest",
    "DigestError",
    "Filters",
    "NewsletterError",
    "Paper",
    "PermanentFailure",
    "Pick",
    "Section",
    "Sender",
    "Settings",
    "Store",
    "StoreError",
    "Subscriber",
    "SubscriberError",
    "TemplateError",
    "TemporaryFailure",
    "__version__",
    "build_site",
    "deliver",
    "ingest_paths",
    "load_settings",
    "parse_digest",
    "select_papers",
]
