"""Test helpers for tests/api: a small fake Profile Store (MockTransport) for unit tests.

The fake understands only what the client sends: EventTime ge/lt/gt/le bounds,
``EventType eq x`` conjuncts, ``$orderby`` on EventTime/TrackId, ``$skip``/``$top`` with the
real result-window check. The integration tests use the real emulator instead.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import httpx
import orjson
import polars as pl
import pytest

from psanalytics import schema

KEY = "fake-key-7f3a9c"

_TIME = re.compile(r"EventTime (ge|gt|lt|le) ([^\s)]+)")
_TYPE = re.compile(r"EventType eq '?([\w]+)'?")


class FakeStore:
    """A minimal TrackEvents server over a canonical frame."""

    def __init__(self, frame: pl.DataFrame, *, key: str = KEY, lenient_window: bool = False):
        self.frame = frame.sort(["EventTime", "TrackId"])
        self.key = key
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()
        self.fault: Callable[[httpx.Request, int], httpx.Response | None] | None = None
        self.deleted: set[str] = set()
        self.tracked: list[list[dict]] = []
        self.preview_items: list[dict] = []
        self.lenient_window = lenient_window

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _bad(self, msg: str, status: int = 400) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": "BadRequest", "message": msg}})

    def handle(self, req: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(req)
            n = len(self.requests)
        if req.headers.get("Authorization") != f"epi-single {self.key}":
            return httpx.Response(401, json={"error": {"code": "Unauthorized", "message": "bad key"}})
        if self.fault is not None:
            r = self.fault(req, n)
            if r is not None:
                return r
        path = req.url.path.lower()
        if req.method == "GET" and path == "/api/v2.0/trackevents":
            return self.get(req)
        if req.method == "DELETE" and path.startswith("/api/v2.0/trackevents/"):
            _, scope, tid = req.url.path.rsplit("/", 2)
            live = self.frame.filter(pl.col("TrackId") == tid)
            if live.height == 0 or tid in self.deleted:
                return httpx.Response(404, json={"error": {"code": "NotFound", "message": f"no event {tid}"}})
            self.deleted.add(tid)
            return httpx.Response(200)
        if req.method == "POST" and path == "/api/v1.0/trackbulk":
            self.tracked.append(orjson.loads(req.content))
            return httpx.Response(202)
        if req.method == "POST" and path == "/api/v2.0/trackevents/preview":
            return httpx.Response(200, json={"items": self.preview_items, "count": len(self.preview_items)})
        return httpx.Response(404)

    def get(self, req: httpx.Request) -> httpx.Response:
        q = req.url.params
        skip, top = int(q.get("$skip", "0")), int(q.get("$top", "100"))
        if skip + top >= 10_000 + (1 if self.lenient_window else 0):
            return self._bad(f"$skip + $top must be less than 10000 (got {skip + top})")
        f = q.get("$filter") or ""
        df = self.frame.filter(~pl.col("TrackId").is_in(list(self.deleted)))
        for op, t in _TIME.findall(f):
            ts = pl.lit(t).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="ns", time_zone="UTC")
            e = {"ge": pl.col("EventTime") >= ts, "gt": pl.col("EventTime") > ts,
                 "lt": pl.col("EventTime") < ts, "le": pl.col("EventTime") <= ts}[op]
            df = df.filter(e)
        for et in _TYPE.findall(f):
            df = df.filter(pl.col("EventType") == et)
        ob = q.get("$orderby", "EventTime asc,TrackId asc")
        desc = "desc" in ob.lower()
        df = df.sort(["EventTime", "TrackId"], descending=desc)
        page = df.slice(skip, top)
        return httpx.Response(200, content=schema.to_api_json(page, envelope=True, total=df.height),
                              headers={"Content-Type": "application/json"})

    def gets(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "GET"]


def make_events(times_ns: list[int], types: list[str] | None = None) -> pl.DataFrame:
    """Canonical frame with the given EventTimes (ns) and TrackIds t00000.."""
    n = len(times_ns)
    return schema.normalize(
        pl.DataFrame(
            {
                "TrackId": [f"t{i:05d}" for i in range(n)],
                "DeviceId": [f"d{i % 7}" for i in range(n)],
                "EventType": types or ["home"] * n,
                "EventTime": pl.Series(times_ns, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC")),
                "Payload": [None if i % 3 else orjson.dumps({"i": i, "n": {"a": [1, "x"]}}).decode() for i in range(n)],
                "User": [{"Email": f"u{i}@x.se" if i % 5 == 0 else "", "Name": ""} for i in range(n)],
            }
        )
    )


@pytest.fixture
def fake_factory():
    def make(frame: pl.DataFrame, **kw) -> FakeStore:
        return FakeStore(frame, **kw)

    return make
