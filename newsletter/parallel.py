"""One day's send split across processes: each takes the subscribers whose id % N is its own.

Composing and SMTP are CPU work in Python, so one process uses one core. With `processes` N,
N worker processes each open the store, connect their share of the SMTP connections and run
the exactly-once pipeline over their share of the subscribers. The ledger is the same SQLite
file and is keyed by (day, subscriber), so the shares never meet: a claim is still committed
before its message is handed over, in whichever process sends it.

On Linux the workers are forked from this process once it has rendered the day, so they
start with the imports and the day's pieces in memory (a spawned worker would import and
render again: ~0.2 s each). This process holds no database connection when it forks: each
worker opens its own. Elsewhere they are spawned and render the day themselves.

Stopping: the workers ignore Ctrl-C; the parent turns Ctrl-C or SIGTERM into a SIGTERM for each
worker, which finishes the messages on the wire, as a single process does. A parent killed
outright cannot: on Linux the kernel then sends each worker that SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import datetime as dt
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from .config import Settings
from .delivery.heap import frozen_heap
from .delivery.pipeline import DeliveryReport, settle_claims
from .delivery.runlock import edition_lock, send_lock
from .errors import Interrupted, NewsletterError
from .store import Store

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext  # no ForkContext on Windows

    from .mail.compose import Composer

PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass(frozen=True, slots=True)
class _Share:
    """What one worker needs: plain values, so they cross the process boundary."""

    settings: Settings
    date: dt.date
    index: int
    count: int
    resend_ambiguous: bool
    backoff: float


def _stop_with(parent: int) -> None:
    """Have the kernel SIGTERM this worker when its parent dies (Linux), as Ctrl-C would.

    A parent killed outright (SIGKILL, the OOM killer) cannot tell its workers; without this
    they would go on sending unwatched, their report going nowhere.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the request took hold: nobody to work for
        os._exit(0)


def _work(
    share: _Share, out: Connection, composer: Composer | None = None, parent: int = 0
) -> None:
    """A worker: send this share of the day; report back (or say what went wrong).

    `composer`: the day's, prepared by the parent (forked workers); None: render it here.
    """
    from .daily import send_day  # the worker imports what it uses (a spawned process is bare)
    from .delivery.smtp import smtp_sender

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _stop_with(parent)

    async def main() -> DeliveryReport:
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        sender = smtp_sender(share.settings)
        try:
            with Store(share.settings.db, create=False) as store:
                return await send_day(
                    store=store,
                    settings=share.settings,
                    sender=sender,
                    date=share.date,
                    clock=store.clock,
                    resend_ambiguous=share.resend_ambiguous,
                    backoff=share.backoff,
                    part=(share.index, share.count),
                    composer=composer,
                )
        finally:
            await sender.aclose()

    def tell(kind: str, value: object) -> None:
        with contextlib.suppress(OSError):  # a parent that died has no one listening
            out.send((kind, value))

    try:
        report = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        tell("interrupted", Interrupted.SEND)
    except NewsletterError as exc:
        tell("error", str(exc))
    except Exception as exc:  # a bug: one line to the parent, never a hung send
        tell("error", f"{type(exc).__name__}: {exc}")
    else:
        tell("report", report)
    finally:
        out.close()


def merge(date: dt.date, reports: list[DeliveryReport]) -> DeliveryReport:
    """The reports of the shares as one: counts added, the first stop reason kept."""
    total = DeliveryReport(date=date)
    for report in reports:
        for field in dataclasses.fields(DeliveryReport):
            value = getattr(report, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(total, field.name, getattr(total, field.name) + value)
        total.stopped = total.stopped or report.stopped
    return total


def send_day_in_processes(
    *,
    settings: Settings,
    date: dt.date,
    processes: int,
    resend_ambiguous: bool = False,
    backoff: float = 1.0,
) -> DeliveryReport:
    """Send `date` to every active subscriber who still needs it, from `processes` workers.

    The settings' concurrency is the number of SMTP connections in all; each worker opens its
    share. When a worker fails, the others finish their share first and the report counts
    what they did, stopped with the failed one's error; NewsletterError only when none could
    report.
    """
    per_worker = max(1, settings.concurrency // processes)
    settings = settings.replace(concurrency=per_worker)
    workers: list[tuple[BaseProcess, Connection]] = []
    results: list[tuple[str, object]] = []
    # SIGTERM (a CI timeout, systemd) stops the send like Ctrl-C does, from the start: while
    # the day renders and workers start too.
    signals: list[int] = []

    def terminate(signum: int, frame: object) -> None:
        signals.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    lock = contextlib.ExitStack()
    try:
        # The workers' send lock (delivery/runlock.py), held here; forked workers inherit it.
        lock.enter_context(send_lock(settings.db, alone=resend_ambiguous))
        lock.enter_context(edition_lock(settings.db, kind="daily", date=date))
        composer = _forked_day(settings, date) if _can_fork() else None
        context: SpawnContext | ForkContext = (
            multiprocessing.get_context("spawn")
            if composer is None
            else multiprocessing.get_context("fork")
        )
        # Frozen while forking: the workers' collectors then leave the inherited heap alone,
        # and do not touch (and so copy) its pages.
        with frozen_heap():
            for index in range(processes):
                receive, send = context.Pipe(duplex=False)
                share = _Share(settings, date, index, processes, resend_ambiguous, backoff)
                process = context.Process(
                    target=_work, args=(share, send, composer, os.getpid()), name=f"send-{index}"
                )
                process.start()
                send.close()
                workers.append((process, receive))
        for worker, receive in workers:
            kind, value = _result(receive)
            worker.join()
            if kind == "died":
                kind, value = "error", _died(worker)
            results.append((kind, value))
    except KeyboardInterrupt:
        for worker, _ in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: the worker finishes what is on the wire
        for worker, _ in workers:
            worker.join()
        raise Interrupted(signum=signals[0] if signals else signal.SIGINT) from None
    finally:
        lock.close()
        signal.signal(signal.SIGTERM, previous)
    errors = [str(value) for kind, value in results if kind != "report"]
    reports = [value for _, value in results if isinstance(value, DeliveryReport)]
    if errors and not reports:
        raise NewsletterError(errors[0])
    # What the other workers did still counts: their report, the failed one's error as the stop.
    total = merge(date, reports)
    total.stopped = errors[0] if errors else total.stopped
    # The ledger has what is left claimed: a failed worker's claims are in no report, and a
    # worker's count was taken under this process's lock, so another send's were ambiguous.
    with Store(settings.db, create=False) as store:
        settle_claims(total, store=store, part=None, kind="daily", locked=True)
    return total


def _can_fork() -> bool:
    """Whether workers may be forked: on Linux, from a process running no other thread.

    Fork is unsafe on macOS and absent on Windows; a thread (a web server's workers) may hold
    a lock at the fork that the worker would then wait for forever.
    """
    return sys.platform.startswith("linux") and threading.active_count() == 1


def _forked_day(settings: Settings, date: dt.date) -> Composer:
    """The day's composer, rendered here for forked workers; the store is closed again."""
    from .daily import day_composer

    with Store(settings.db, create=False) as store:
        return day_composer(store=store, settings=settings, date=date, clock=store.clock)


def _result(receive: Connection) -> tuple[str, object]:
    with contextlib.closing(receive):
        try:
            kind, value = receive.recv()
        except EOFError:  # the worker died without a word (killed)
            return ("died", None)
    return (str(kind), value)


def _died(worker: BaseProcess) -> str:
    """One line for a worker that died without a word."""
    code = worker.exitcode
    how = (
        f"was killed by {signal.Signals(-code).name}"
        if code is not None and code < 0 and -code in signal.valid_signals()
        else f"stopped unexpectedly (exit status {code})"
    )
    return (
        f"send process {worker.name} {how}; what it sent before is in the ledger, not in the "
        "counts above; run again to send the rest"
    )
