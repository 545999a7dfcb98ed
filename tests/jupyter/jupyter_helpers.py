"""Helpers for the Jupyter layer's tests (a uniquely named module, importable from tests)."""

from __future__ import annotations

import polars as pl


def make_store(events: pl.DataFrame):  # noqa: ANN201
    """A ProfileStore talking to an in-process emulator seeded with ``events``."""
    from psanalytics._connect import connect
    from psanalytics.emulator import Emulator

    emu = Emulator(events)
    return connect(emu.url, emu.api_key, transport=emu.transport(), emulator=emu, progress=False)
