"""The delivery ledger in a real SQLite file: claims, outcomes, ambiguity, concurrent runs."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from newsletter.store import Store

DAY = dt.date(2024, 12, 13)


@pytest.fixture
def people(store: Store) -> list[int]:
    return [store.add_subscriber(f"p{i}@example.com", name=f"P{i}").id for i in range(5)]


def test_a_claim_is_taken_once_and_committed_before_it_returns(
    store: Store, people: list[int], tmp_path: Path
) -> None:
    assert store.claim_delivery(DAY, people[0], message_id="m0@x") == "new"
    assert store.claim_delivery(DAY, people[0], message_id="m0-again@x") is None
    # Another connection (another process, or the run after a crash) sees the claim at once.
    with Store(tmp_path / "test.db") as other:
        assert other.delivery_states(DAY, people) == {people[0]: "claimed"}
        row = next(other.deliveries(DAY))
        assert (row.email, row.status, row.message_id) == ("p0@example.com", "claimed", "m0@x")


def test_the_same_subscriber_on_another_day_is_a_separate_claim(
    store: Store, people: list[int]
) -> None:
    assert store.claim_delivery(DAY, people[0], message_id="a@x") == "new"
    assert store.claim_delivery(DAY + dt.timedelta(days=1), people[0], message_id="b@x") == "new"


def test_outcomes_count_attempts_and_only_touch_claimed_rows(
    store: Store, people: list[int]
) -> None:
    store.claim_delivery(DAY, people[0], message_id="m@x")
    store.finish_delivery(DAY, people[0], status="deferred", attempts=3, error="451 later")
    assert store.claim_delivery(DAY, people[0], message_id="m@x") == "deferred"
    store.finish_delivery(DAY, people[0], status="sent", attempts=1)
    store.finish_delivery(DAY, people[0], status="failed", attempts=1, error="late")  # ignored
    (row,) = store.deliveries(DAY)
    assert (row.status, row.attempts, row.last_error) == ("sent", 4, None)
    assert store.claim_delivery(DAY, people[0], message_id="m@x") is None
    with pytest.raises(ValueError):
        store.finish_delivery(DAY, people[0], status="claimed", attempts=0)


def test_sent_outcomes_can_be_committed_in_a_batch(store: Store, people: list[int]) -> None:
    for sid in people[:3]:
        store.claim_delivery(DAY, sid, message_id=f"{sid}@x")
    store.mark_sent(DAY, [(people[0], 1), (people[1], 2), (people[4], 1)])  # 4 was never claimed
    rows = {r.subscriber_id: (r.status, r.attempts) for r in store.deliveries(DAY)}
    assert rows == {people[0]: ("sent", 1), people[1]: ("sent", 2), people[2]: ("claimed", 0)}


def test_ambiguous_claims_are_taken_over_only_when_asked(store: Store, people: list[int]) -> None:
    store.claim_delivery(DAY, people[1], message_id="m@x")  # a run died here
    assert store.claim_delivery(DAY, people[1], message_id="m@x") is None
    assert store.claim_delivery(DAY, people[1], message_id="m@x", take_ambiguous=True) == "claimed"


def test_failed_rows_are_final(store: Store, people: list[int]) -> None:
    store.claim_delivery(DAY, people[2], message_id="m@x")
    store.finish_delivery(DAY, people[2], status="failed", attempts=1, error="550 5.7.1 no")
    assert store.claim_delivery(DAY, people[2], message_id="m@x", take_ambiguous=True) is None


def test_release_restores_what_was_there(store: Store, people: list[int]) -> None:
    store.claim_delivery(DAY, people[0], message_id="m@x")
    store.release_claim(DAY, people[0], previous="new")
    assert store.delivery_states(DAY, people) == {}
    store.claim_delivery(DAY, people[1], message_id="m@x")
    store.finish_delivery(DAY, people[1], status="deferred", attempts=1, error="421")
    store.claim_delivery(DAY, people[1], message_id="m@x")
    store.release_claim(DAY, people[1], previous="deferred")
    assert store.delivery_states(DAY, people) == {people[1]: "deferred"}


def test_skipped_rows_never_overwrite_a_claim_or_a_sent_message(
    store: Store, people: list[int]
) -> None:
    store.claim_delivery(DAY, people[0], message_id="a@x")
    store.claim_delivery(DAY, people[1], message_id="b@x")
    store.finish_delivery(DAY, people[1], status="sent", attempts=1)
    store.claim_delivery(DAY, people[2], message_id="c@x")
    store.finish_delivery(DAY, people[2], status="deferred", attempts=1)
    store.record_skipped(DAY, people)
    assert store.delivery_states(DAY, people) == {
        people[0]: "claimed",
        people[1]: "sent",
        people[2]: "skipped",
        people[3]: "skipped",
        people[4]: "skipped",
    }
    # A skipped row is re-evaluated by the next run (preferences may have changed).
    assert store.claim_delivery(DAY, people[3], message_id="d@x") == "skipped"
    assert store.delivery_counts(DAY) == {
        "claimed": 2,
        "sent": 1,
        "deferred": 0,
        "failed": 0,
        "skipped": 2,
    }


def test_deliveries_stream_past_one_page_and_filter_by_status(store: Store) -> None:
    ids = [store.add_subscriber(f"s{i}@example.com").id for i in range(1203)]
    store.record_skipped(DAY, ids)
    store.claim_delivery(DAY, ids[-1], message_id="last@x")
    rows = list(store.deliveries(DAY))
    assert [r.subscriber_id for r in rows] == ids
    skipped = list(store.deliveries(DAY, status="skipped"))
    assert len(skipped) == 1202
    assert [r.email for r in store.deliveries(DAY, status="skipped")][:2] == [
        "s0@example.com",
        "s1@example.com",
    ]
    assert store.audience_size() == 1203


def test_two_runs_racing_for_the_same_rows_never_both_win(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    with Store(path) as setup:
        ids = [setup.add_subscriber(f"r{i}@example.com").id for i in range(200)]
    wins: list[list[int]] = [[], []]

    def run(slot: int) -> None:
        with Store(path) as mine:
            for sid in ids:
                if mine.claim_delivery(DAY, sid, message_id=f"{sid}@x") is not None:
                    wins[slot].append(sid)

    threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins[0] + wins[1]) == ids
    assert not set(wins[0]) & set(wins[1])
