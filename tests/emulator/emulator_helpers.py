"""Shared constants for the emulator tests (a uniquely named module, importable by basename)."""

from __future__ import annotations

import polars as pl

KEY = "emu-test-key-7c1d"
AUTH = {"Authorization": f"epi-single {KEY}"}


def expected(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["EventTime", "TrackId"])
