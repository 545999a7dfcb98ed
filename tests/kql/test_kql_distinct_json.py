"""JSON paths read once per distinct document (where every row is read anyway) give
exactly what reading every row gives."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from psanalytics import schema
from psanalytics.query.kql import engine
from psanalytics.query.kql.engine import execute, plan
from psanalytics.query.kql.types import map_distinct

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


@pytest.mark.parametrize("query", [
    # paths inside aggregates are read before the group_by, into hidden columns
    "Events | summarize s = sum(toreal(Payload.a.b)), m = max(tostring(Payload.a.c)), "
    "n = countif(isnotnull(Payload.a2)) by EventType | sort by EventType asc",
    "Events | summarize s = sum(toint(Payload.a.b)), d = dcount(tostring(Payload.a))",
    # a column of the input named like the hidden ones stays what it was
    "Events | extend __json_0 = 2, ___json_0 = 3 | summarize s = sum(__json_0), "
    "t = sum(___json_0), b = sum(toreal(Payload.a.b)) by EventType | sort by EventType asc",
    # arg_max's arguments are read before the group_by too (never once per group)
    "Events | summarize arg_max(TrackId, Payload.a.b, Payload.a) by EventType "
    "| sort by EventType asc",
    # mv-expand then aggregates over the elements' fields
    "Events | mv-expand e = Payload.a | summarize n = count(), s = sum(toint(e.b)) "
    "by k = tostring(e.c) | sort by k asc",
    "Events | mv-expand e = Payload | summarize n = count() by k = tostring(e.a) "
    "| sort by k asc",
])
def test_aggregates_over_distinct_documents_give_the_per_row_answer(events, query):
    got = execute(query, {"Events": events}, now=NOW).frame
    per_row = plan(query, {"Events": events}, now=NOW).collect()
    assert got.equals(per_row), (got, per_row)
    compiled = engine._compile(query, engine._lazy_tables({"Events": events}), now=NOW,
                               params=None, distinct_json=True)
    assert compiled.in_memory  # the distinct-document path was taken


def test_a_hash_collision_reads_every_row():
    s = pl.Series("p", ['{"a":1}', '{"a":2}', '{"a":1}', None, '{"a":3}'])
    calls = []

    def fn(d: pl.Series) -> pl.Series:
        calls.append(d.len())
        return d.str.json_path_match("$.a")

    # distinct hashes: each distinct text is read once
    assert map_distinct(s, fn).to_list() == ["1", "2", "1", None, "3"]
    assert calls == [4]
    # two texts share a hash: the mapping would be wrong, so every row is read
    calls.clear()
    collide = pl.Series([7, 7, 7, 9, 11], dtype=pl.UInt64)
    out = map_distinct(s, fn, hashes=collide)
    assert out.to_list() == ["1", "2", "1", None, "3"] and out.name == "p"
    assert calls == [5]


def test_row_cumsum_reads_its_value_per_row_and_gives_the_per_row_answer(events):
    # row_cumsum sums per restart group (a window): a per-document reading would run per group
    q = ("Events | sort by TrackId asc | extend c = row_cumsum(toint(Payload.a.b), "
         "EventType == 'y') | summarize m = max(c), s = sum(c), n = count() by EventType "
         "| sort by EventType asc")
    got = execute(q, {"Events": events}, now=NOW).frame
    assert got.equals(plan(q, {"Events": events}, now=NOW).collect())
    assert got.rows() == [("x", 4, 531, 466), ("y", 2, 100, 234)]
