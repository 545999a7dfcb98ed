"""JSON paths read once per distinct document (where every row is read anyway) give
exactly what reading every row gives."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from psanalytics import schema
from psanalytics.query.kql import engine
from psanalytics.query.kql.engine import execute, plan

NOW = datetime(2024, 3, 20, tzinfo=UTC)
DOCS = ['{"a":{"b":1.50,"c":"x"}}', '{"a":{"b":2}}', None, '{"a":[1]}', "not json",
        '{"a":{"b":"q\\"r"},"a2":1}', '{"a":{"c":null}}']


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    rows = [{"TrackId": f"t{i}", "EventType": "x" if i % 3 else "y",
             "EventTime": f"2024-03-0{1 + i % 5}T00:00:00Z", "Payload": DOCS[i % len(DOCS)]}
            for i in range(700)]
    return schema.normalize(rows)


@pytest.mark.parametrize("query", [
    "Events | summarize n = count() by b = tostring(Payload.a.b) | sort by b asc",
    "Events | extend b = toreal(Payload.a.b), c = tostring(Payload['a']['c']) "
    "| summarize s = sum(b), n = count() by c, EventType | sort by c asc, EventType asc",
    "Events | where tostring(Payload.a.c) == 'x' | count",
    "Events | extend j = tostring(Payload.a) | distinct j | sort by j asc",
])
def test_distinct_documents_give_the_per_row_answer(events, query):
    got = execute(query, {"Events": events}, now=NOW).frame
    per_row = plan(query, {"Events": events}, now=NOW).collect()  # plan() never dedupes
    assert got.equals(per_row)
    compiled = engine._compile(query, engine._lazy_tables({"Events": events}), now=NOW,
                               params=None, distinct_json=True)
    assert compiled.in_memory  # the distinct-document path was taken


def test_before_a_take_every_row_is_read_as_usual(events):
    q = "Events | extend b = tostring(Payload.a.b) | take 5"
    compiled = engine._compile(q, engine._lazy_tables({"Events": events}), now=NOW,
                               params=None, distinct_json=True)
    assert not compiled.in_memory
    assert execute(q, {"Events": events}, now=NOW).frame.height == 5
