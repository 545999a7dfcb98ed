"""Fixtures for the Jupyter layer's tests: small hand-built canonical frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from psanalytics import schema

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def ev(
    minutes: float,
    device: str = "d1",
    etype: str = "page",
    *,
    page: str = "https://example.com/",
    country: str = "SE",
    session: str = "s1",
    track: str | None = None,
) -> dict:
    """One PascalCase API-style event, ``minutes`` after T0."""
    t = T0 + timedelta(minutes=minutes)
    return {
        "TrackId": track or f"{device}-{etype}-{minutes}",
        "DeviceId": device,
        "EventType": etype,
        "EventTime": t.isoformat().replace("+00:00", "Z"),
        "PageUri": page,
        "CountryCode": country,
        "SessionId": session,
        "Value": f"{etype} at {minutes}",
    }


@pytest.fixture
def small_events() -> pl.DataFrame:
    """Two devices, 8 events, known sessions (gap > 30 min splits d1 into two sessions)."""
    rows = [
        ev(5, "d1", "home", page="https://example.com/", session="a"),
        ev(6, "d1", "product", page="https://example.com/p1", session="a"),
        ev(20, "d1", "basket", page="https://example.com/basket", session="a"),
        ev(125, "d1", "home", page="https://example.com/", session="b"),
        ev(126, "d1", "product", page="https://example.com/p2", session="b"),
        ev(10, "d2", "home", page="https://example.com/", country="", session="c"),
        ev(11, "d2", "product", page="https://example.com/p1", country="DE", session="c"),
        ev(12, "d2", "order", page="", country="DE", session="c"),
    ]
    return schema.normalize(rows).sort("EventTime")


@pytest.fixture
def shell(small_events):
    """A fresh IPython InteractiveShell with ``%load_ext psanalytics`` and ``events`` loaded."""
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance()
    sh.user_ns["events"] = small_events
    result = sh.run_cell("%load_ext psanalytics")
    assert result.success
    yield sh
    InteractiveShell.clear_instance()


@pytest.fixture
def remote_shell(shell, small_events):
    """The shell plus ``store``: a client of an emulator holding the same 8 events."""
    from jupyter_helpers import make_store

    shell.user_ns["store"] = make_store(small_events)
    return shell
