"""A message ready to hand to a sender: what composing produces and delivery consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One personalised email, already serialised (CRLF line endings, ready for SMTP DATA)."""

    subscriber_id: int
    recipient: str  # envelope recipient (the subscriber's address)
    envelope_from: str  # envelope sender: the bounce address, not From
    message_id: str  # without angle brackets, e.g. "2024-12-13.17.abc@papers.example.com"
    data: bytes
    # True when whoever built `data` guarantees CRLF line ends only (no bare CR or LF): the
    # composer does, and the SMTP sender then need not scan tens of KB for them per message.
    crlf_only: bool = False
