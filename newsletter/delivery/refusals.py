"""What an SMTP refusal is about: the recipient, this one message, or our own sending setup.

Only a refusal of the recipient's address may mark a subscriber bounced. A relay that refuses
our sender identity, login, TLS or policy (Amazon SES in its sandbox answering "Email address is
not verified", 5.7.x about the sender, 5.5.x for a command it did not like) would refuse every
message the same way: that stops the run and changes no subscriber. Pure: replies in, a verdict
out; delivery/smtp.py turns the verdict into the error the pipeline acts on.

A relay that refuses everyone with words no rule knows ("554 Client host rejected", a
blocklist, a quota) looks, message by message, like recipients refused for good. The same
refusal of many recipients in a row, at several domains, is that relay (`RefusalStreak`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["temporary", "stop", "bounce", "failed"]

# Enhanced status 5.1.x is about the recipient address (RFC 3463), except 5.1.7/5.1.8 (sender).
_ADDRESS_STATUS = re.compile(r"\b5\.1\.(?!7\b|8\b)\d{1,3}\b")
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox (?:does not exist|not found)"
    r"|(?:user|mailbox|recipient|address) does not exist|invalid (?:recipient|mailbox)",
    re.IGNORECASE,
)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Words of a refusal about how we send, not about whom to: the relay's setup, our identity.
_SETUP = re.compile(
    r"not verified|sandbox|relay(?:ing)?(?: access)? (?:denied|not permitted|prohibited)"
    r"|authenticat|starttls|tls required|encryption required|sender|from address"
    r"|not (?:authorized|permitted|allowed) to send",
    re.IGNORECASE,
)
_AUTH_CODES = frozenset({530, 534, 535, 538})  # RFC 4954: authentication required/failed


def is_bounce(code: int, text: str) -> bool:
    """Whether a 5xx reply says the recipient address does not exist (never mail it again)."""
    if not 500 <= code < 600:
        return False
    if _ADDRESS_STATUS.search(text):
        return True
    return code in (550, 551, 553) and bool(_UNKNOWN_USER.search(text))


def classify_refusal(*, stage: str, code: int, text: str, sender: str) -> Verdict:
    """What a refusal at `stage` (MAIL, RCPT or DATA) of one message to one recipient means.

    temporary: 4xx (or a reply out of place), try again later; stop: our setup is refused, every message would be;
    bounce: the recipient address does not exist; failed: this message, for good.
    """
    if not 500 <= code < 600:  # 4xx; or a reply no server should give here (1xx, 3xx)
        return "temporary"
    if stage == "MAIL":
        return "failed" if code == 552 else "stop"  # 552: this message is too big
    status = _STATUS.search(text)
    klass, subject = (status[2], status[3]) if status else ("", "")
    if (
        code in _AUTH_CODES
        or 500 <= code <= 504  # a command or parameter the relay does not accept
        or klass == "5"  # 5.5.x: protocol
        or (klass == "1" and subject in ("7", "8"))  # bad sender address
        or _SETUP.search(text)
        or (sender and sender.lower() in text.lower())
    ):
        return "stop"
    if stage in ("RCPT", "DATA") and is_bounce(code, text):
        return "bounce"
    return "failed"


_DIGITS = re.compile(r"[^\s<>()\[\],;]*\d[^\s<>()\[\],;]*")  # ids, counters, addresses, times


def masked_reply(*, stage: str, code: int, text: str, recipient: str) -> str:
    """The refusal with what differs from recipient to recipient masked: the address, its
    local part, and every token with a digit in it (queue ids, counters), the enhanced status
    kept. The same refusal of two recipients compares equal."""
    status = _STATUS.search(text)
    if status:
        text = text[: status.start()] + text[status.end() :]
    if recipient:
        local = recipient.rpartition("@")[0]
        text = re.sub(re.escape(recipient), "<recipient>", text, flags=re.IGNORECASE)
        if len(local) >= 3:
            text = re.sub(re.escape(local), "<local>", text, flags=re.IGNORECASE)
    text = _DIGITS.sub("#", text)
    return " ".join([stage, str(code), *([status[0]] if status else []), *text.split()])


@dataclass
class RefusalStreak:
    """The same refusal (or deferral) of recipient after recipient: the relay, not them.

    `add` counts one reply, masked as `masked_reply` does (None: anything else, which ends
    the streak), and says whether the streak is now long enough to stop on: `at` in a row
    across `domains` recipient domains. One dead or greylisting domain answers its mailboxes
    alike; a relay that refuses or is down answers every domain alike. (For a list at fewer
    domains, ask for as many as it has.)
    """

    at: int = 10
    domains: int = 3
    reply: str | None = None
    count: int = 0
    seen: set[str] = field(default_factory=set)

    def add(self, reply: str | None, *, recipient: str) -> bool:
        if reply is None and self.count == 0:  # the send path: nothing under way to end
            return False
        if reply is None or reply != self.reply:
            self.reply, self.count, self.seen = reply, 0, set()
            if reply is None:
                return False
        self.count += 1
        self.seen.add(recipient.rpartition("@")[2].lower())
        return self.count >= self.at and len(self.seen) >= self.domains
