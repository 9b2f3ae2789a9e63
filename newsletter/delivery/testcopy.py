"""One test copy of a day's email to an address of the operator's: no ledger, no subscriber."""

from __future__ import annotations

import dataclasses
import itertools

from ..mail.outgoing import OutgoingMessage
from ..model import Subscriber
from ..store import Store
from .pipeline import BATCH, Compose, Sender


async def send_test_copy(
    *, store: Store, compose: Compose, sender: Sender, to: str
) -> OutgoingMessage | None:
    """Send one copy of the first non-empty selection to `to`; no ledger, no subscriber links.

    The copy is composed for a stand-in subscriber (id 0, no name) with the filters of the
    first daily subscriber whose selection is not empty (a weekly one never gets a day's
    email), so its unsubscribe link cannot unsubscribe anyone and no reader's name goes to the
    tester. None when every selection is empty.
    """
    candidates = itertools.chain(
        store.active_subscribers(batch=BATCH, cadence="daily"), [Subscriber(id=0, email=to)]
    )
    for subscriber in candidates:
        message = compose(dataclasses.replace(subscriber, id=0, email=to, name=""))
        if message is not None:
            await sender.send(message)
            return message
    return None
