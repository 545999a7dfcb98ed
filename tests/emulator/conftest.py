"""Fixtures: a small hand-built canonical frame and real loopback servers over it."""

from __future__ import annotations

import httpx
import polars as pl
import pytest
from emulator_helpers import AUTH, KEY

from psanalytics import schema
from psanalytics.emulator import serve


def _rows() -> list[dict]:
    rows = []
    types = ["epiPageView", "order", "pageview", "home", "epiSearch"]
    for i in range(60):
        day = 1 + i // 20  # 2024-03-01 .. 03
        rows.append({
            "TrackId": f"t-{i:03d}",
            "DeviceId": f"9168796{i % 3}-bc76-49a2-862c-e014441b8f6b",
            "EventType": types[i % 5],
            "Value": f"v{i}",
            "Scope": "default" if i % 10 else "shop",
            "PageUri": f"https://example.com/p{i % 7}",
            "EventTime": f"2024-03-0{day}T{(i % 20):02d}:00:00.{i:07d}Z",
            "User": {"Email": f"u{i % 4}@example.com" if i % 2 == 0 else "", "Name": "N"},
            "Payload": None if i % 3 == 0 else (
                '{"epi":{"language":"' + ('sv' if i % 2 else 'en') + '"},"total":' + str(i) + '}'),
        })
    # two events at the same instant (ties broken by TrackId)
    rows.append({"TrackId": "t-tie-b", "DeviceId": "d", "EventType": "home", "Value": "x",
                 "Scope": "default", "EventTime": "2024-03-02T05:00:00.0000020Z"})
    rows.append({"TrackId": "t-tie-a", "DeviceId": "d", "EventType": "home", "Value": "x",
                 "Scope": "default", "EventTime": "2024-03-02T05:00:00.0000020Z"})
    return rows


@pytest.fixture(scope="session")
def small() -> pl.DataFrame:
    return schema.normalize(_rows())


@pytest.fixture(scope="session")
def server(small):
    with serve(small, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    server.set_faults(None)
    yield server
    server.set_faults(None)
    server.reset()


@pytest.fixture
def client(srv):
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=10) as c:
        yield c
