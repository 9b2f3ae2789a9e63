"""Keeping the garbage collector off a batch's long-lived objects while the batch runs."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects alive now, for the length of a batch.

    Composing allocates all the time, so the collector runs; each full collection would trace
    all the process holds (modules, templates, the day's rendered pieces): at 20k messages
    about 40 ms of a 0.8 s compose. gc.freeze() sets the objects alive now aside, where the
    collector does not look; gc.unfreeze() gives them back when the batch ends, so nothing
    stays out of reach of the collector beyond it. Nested or while another batch holds the
    heap frozen, it leaves the freeze to that one.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
