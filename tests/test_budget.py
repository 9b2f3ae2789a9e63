"""fit_entries: the newest entries that fit a byte budget, with stand-in renderings."""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.publish.budget import fit_entries


def sizes_render(entries: Sequence[int]) -> dict[str, bytes]:
    """One file holding each entry as that many bytes."""
    return {"feed": b"x" * sum(entries)}


def test_the_newest_entry_alone_is_tried_before_none() -> None:
    # A huge second entry made the proportional step jump from 2 entries straight to 0.
    count, files = fit_entries([900, 50_000, 10], sizes_render, max_entries=2, max_bytes=1_000)
    assert (count, len(files["feed"])) == (1, 900)


def test_entries_of_like_size_are_cut_in_one_step() -> None:
    calls: list[int] = []

    def render(entries: Sequence[int]) -> dict[str, bytes]:
        calls.append(len(entries))
        return sizes_render(entries)

    count, _ = fit_entries([100] * 50, render, max_entries=40, max_bytes=2_050)
    assert count == 20
    assert calls == [40, 20]


def test_nothing_fits_gives_none() -> None:
    assert fit_entries([5_000], sizes_render, max_entries=10, max_bytes=1_000)[0] == 0
