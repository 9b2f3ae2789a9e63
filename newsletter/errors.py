"""The one exception tree of the package.

NewsletterError              anything the user can fix; the CLI prints it as one line
├── Interrupted              Ctrl-C or SIGTERM stopped a command (exit 130 or 143, not 1)
├── DigestError              a digest file that does not parse (file and line)
├── SubscriberError          a subscriber record that is invalid (CSV row)
├── ConfigError              a setting or option with a bad value
├── StoreError               the database cannot be used as asked
│   └── StoreBusy            another writer held the database past the busy timeout (retry)
├── TemplateError            an email or site template that does not render
├── WebhookError             a provider's webhook request that is malformed (400)
│   └── WebhookRefused       not signed by the provider, bad credentials, a topic not ours (403)
└── DeliveryError            mail could not be handed to the SMTP server (stops a send)
    ├── TemporaryFailure     one message: 4xx, timeout, dropped connection (retried, then deferred)
    └── PermanentFailure     one message: 5xx (failed; bounced when the address does not exist)
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Something went wrong that the user can fix; the message says what."""


class Interrupted(NewsletterError):
    """Ctrl-C or SIGTERM stopped the command; the shell's convention for its exit code
    (128 + the signal's number), so a script tells a stop from a failure."""

    SEND = "interrupted: messages in flight were finished; run again to send the rest"

    def __init__(self, message: str = SEND, *, signum: int = 2) -> None:
        self.signum = signum  # SIGINT 2, SIGTERM 15
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class DigestError(NewsletterError):
    """A digest file is malformed; names the file and line."""

    def __init__(self, message: str, *, source: str = "<digest>", line: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class SubscriberError(NewsletterError):
    """A subscriber record is invalid; names the CSV row when there is one."""

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        source: str | None = None,
        code: str = "invalid",
        field: str | None = None,
    ) -> None:
        self.message = message
        self.row = row
        self.source = source
        self.code = code  # stable name of the problem, for translated messages
        self.field = field  # the form or CSV field at fault, when there is one
        where = [part for part in (source, None if row is None else f"row {row}") if part]
        prefix = "".join(f"{part}: " for part in where)
        super().__init__(f"{prefix}{message}")


class ConfigError(NewsletterError):
    """A setting or command-line option has a bad value."""


class StoreError(NewsletterError):
    """The database cannot be opened or used as asked."""

    def __init__(self, message: str, *, fault: str = "error") -> None:
        # What went wrong, for /healthz: "read-only", "full", "corrupt", "busy", "newer", "gone"
        # (removed or replaced under the service) or "error".
        self.fault = fault
        super().__init__(message)


class StoreBusy(StoreError):
    """Another process held the database locked for longer than the busy timeout; try again."""


class TemplateError(NewsletterError):
    """A template is missing or fails to render."""


class WebhookError(NewsletterError):
    """A bounce webhook request is malformed; says which field."""


class WebhookRefused(WebhookError):
    """A bounce webhook request is not from the provider we trust (signature, topic, login)."""


class DeliveryError(NewsletterError):
    """Mail could not be delivered as configured (connection, TLS, authentication)."""


class TemporaryFailure(DeliveryError):
    """The SMTP server could not take a message now (4xx, timeout, dropped connection); retry later."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class PermanentFailure(DeliveryError):
    """The SMTP server refused a message for good (5xx); `bounced` when the address does not exist.

    `reply` is the server's refusal with the recipient's address masked (None when no server
    answered), so the same refusal of different recipients compares equal.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        bounced: bool = False,
        reply: str | None = None,
    ) -> None:
        self.code = code
        self.bounced = bounced
        self.reply = reply
        super().__init__(message)
