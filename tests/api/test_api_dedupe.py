"""_dedupe: the hash pre-check must never change which rows are kept."""

from __future__ import annotations

import polars as pl

from psanalytics import schema
from psanalytics.api._paging import _dedupe


def _frame(ids: list[str]) -> pl.DataFrame:
    return schema.normalize([
        {"TrackId": t, "EventType": f"e{i}", "EventTime": f"2024-03-01T00:00:0{i}.0000000Z"}
        for i, t in enumerate(ids)
    ])


def test_unique_ids_come_back_unchanged() -> None:
    f = _frame(["a", "b", "c", ""])
    out, dropped = _dedupe(f)
    assert dropped == 0
    assert out.equals(f)


def test_repeats_keep_the_first_and_empty_ids_are_all_kept() -> None:
    f = _frame(["a", "b", "a", "", "", "b", "c"])
    out, dropped = _dedupe(f)
    assert dropped == 2
    assert out["TrackId"].to_list() == ["a", "b", "", "", "c"]
    assert out["EventType"].to_list() == ["e0", "e1", "e3", "e4", "e6"]
