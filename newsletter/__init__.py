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

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("newsletter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

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
