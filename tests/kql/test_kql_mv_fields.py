"""``mv-expand`` straight into the fields read from its elements (op_mvfields) gives
exactly what the general path gives: element texts, then ``json_path_match`` on them
(``plan()`` never takes the fast path)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from psanalytics import schema
from psanalytics.query.kql import engine
from psanalytics.query.kql.engine import execute, plan

NOW = datetime(2024, 3, 20, tzinfo=UTC)
DOCS = [
    '{"lines":[{"refCode":"A","qty":2},{"refCode":"B","qty":1.50},{"refCode":"A","qty":"3"}]}',
    '{"lines":[{"refCode":"C","qty":true,"x":{"b":1,"a":[2,"y"]}},5,"s",null,[1,2],{}]}',
    '{"lines":{"refCode":"D","qty":4}}',          # a bag: one-key bags
    '{"lines":"{\\"refCode\\":\\"E\\",\\"qty\\":7}"}',  # a string: expanded as itself
    '{"lines":12}', '{"lines":[]}', '{"other":1}', None, "not json", "null",
    '{"lines":[{"refCode":"F","qty":12345678901234567890},{"refCode":"G","qty":-0.0}]}',
    '{"lines":[{"refCode":"H","qty":1e20,"x":[[1],{"a":null}]},{"qty":100000000000000000000000}]}',
    '{"lines":[{"refCode":"","qty":-7,"x":"q\\"r\\u00e9"}]}',
]


def frame(docs: list[str | None], n: int = 300) -> pl.DataFrame:
    rows = [{"TrackId": f"t{i}", "EventType": "order" if i % 4 else "basket",
             "EventTime": "2024-03-01T00:00:00Z", "Payload": docs[i % len(docs)]}
            for i in range(n)]
    return schema.normalize(rows)


def fast(query: str, events: pl.DataFrame) -> bool:
    """The plan expands straight into fields (its hidden columns are named __mvf_)."""
    c = engine._compile(query, engine._lazy_tables({"Events": events}), now=NOW,
                        params=None, distinct_json=True)
    return "__mvf_" in c.lf.explain(optimizations=pl.QueryOptFlags(comm_subexpr_elim=False))


def same(query: str, events: pl.DataFrame) -> pl.DataFrame:
    got = execute(query, {"Events": events}, now=NOW).frame
    general = plan(query, {"Events": events}, now=NOW).collect()
    # (a sum of reals may differ in its last bits with the order Polars adds them in)
    assert_frame_equal(got, general, check_exact=False, rel_tol=1e-12)
    return got


B6 = ("Events | where EventType in ('order', 'basket') | mv-expand line = Payload.lines "
      "| summarize qty = sum(toint(line.qty)) by refCode = tostring(line.refCode) "
      "| sort by qty desc, refCode asc")  # (benchmarks/kql.py: top 10 by qty; ties)

QUERIES = [
    B6,
    "Events | mv-expand line = Payload.lines | summarize n = count(), q = make_list(line.qty),"
    " x = make_set(tostring(line.x)), a = max(tostring(line.x.a[1])) "
    "by r = tostring(line.refCode) | sort by r asc",
    "Events | mv-expand kind=array line = Payload.lines "
    "| summarize n = count() by k = tostring(line[0]), v = tostring(line[1]) "
    "| sort by k asc, v asc",
    "Events | mv-expand line = Payload.lines | where isnotempty(tostring(line.refCode)) "
    "| extend q = toreal(line.qty) | summarize s = sum(q), n = count() by EventType "
    "| sort by EventType asc",
    "Events | mv-expand line = Payload.lines | summarize dcount(tostring(line.x)), "
    "countif(line.qty == 2), sum(toreal(line['qty']))",
    "Events | mv-expand line = Payload.lines "
    "| summarize arg_max(toreal(line.qty), line.refCode) by EventType | sort by EventType asc",
]


@pytest.mark.parametrize("query", QUERIES)
def test_fields_read_at_the_expansion_give_the_general_answer(query):
    events = frame(DOCS)
    assert fast(query, events)
    same(query, events)


def test_b6_reads_the_fields_of_each_element():
    got = same(B6, frame(DOCS))
    # A: 2 + "3" (two of every 13 rows... per document: 300 rows, 13 documents)
    assert got.columns == ["refCode", "qty"] and got.schema["qty"] == pl.Int64
    per_doc = {r: q for r, q in got.iter_rows()}
    n0 = len(range(0, 300, 13))  # rows holding the first document
    assert per_doc["A"] == 5 * n0 and per_doc["B"] == 1 * n0


@pytest.mark.parametrize("query", [
    # the element is used whole: the general path
    "Events | mv-expand line = Payload.lines | summarize make_list(line)",
    "Events | mv-expand line = Payload.lines | where isnotnull(line) | summarize count()",
    # an operator other than where/extend before the summarize, or none at all
    "Events | mv-expand line = Payload.lines | take 5 | summarize count() by tostring(line.qty) "
    "| sort by line_qty asc",
    "Events | mv-expand line = Payload.lines | project q = line.qty",
    # the column is redefined, a computed key, a key that is not a plain name, '*'
    "Events | mv-expand line = Payload.lines | extend line = 1 | summarize sum(line)",
    "Events | mv-expand line = Payload.lines | summarize count() by tostring(line['a-b'])",
    "Events | mv-expand line = Payload.lines | summarize arg_max(tostring(line.qty), *)",
    # typed, limited, with an index, two columns
    "Events | mv-expand line = Payload.lines to typeof(string) | summarize count() by line "
    "| sort by line asc",
    "Events | mv-expand line = Payload.lines limit 1 | summarize count() by tostring(line.qty) "
    "| sort by line_qty asc",
    "Events | mv-expand with_itemindex=i line = Payload.lines "
    "| summarize count() by tostring(line.qty) | sort by line_qty asc",
])
def test_other_uses_take_the_general_path(query):
    events = frame(DOCS)
    assert not fast(query, events)
    same(query, events)


def test_a_user_function_sees_the_element_whole():
    q = ("let f = (x: dynamic) { tostring(x.qty) }; Events | mv-expand line = Payload.lines "
         "| summarize count() by f(line) | sort by Column1 asc")
    events = frame(DOCS)
    assert not fast(q, events)
    same(q, events)


def test_a_subquery_with_its_own_column_of_that_name_is_not_read_from_the_fields():
    q = ("let T = datatable(line: dynamic) [dynamic({'qty': 9})]; Events "
         "| mv-expand line = Payload.lines "
         "| summarize n = count() by q = tostring(line.qty), "
         "t = toscalar(T | summarize max(toint(line.qty))) | sort by q asc")
    events = frame(DOCS)
    assert fast(q, events)
    got = same(q, events)
    assert set(got["t"].to_list()) == {9}


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["qty", "refCode", "a", "0"]), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_json, min_size=1, max_size=6))
def test_generated_documents_give_the_general_answer(values):
    # (json, not orjson: integers beyond 64 bits too, which orjson reads as reals)
    docs = [json.dumps({"lines": v}, separators=(",", ":")) for v in values] + ["{}", None]
    events = frame(docs, n=40)
    q = ("Events | mv-expand line = Payload.lines | summarize n = count(), "
         "s = make_list(tostring(line.qty)), r = make_list(tostring(line.refCode)), "
         "a = make_list(tostring(line.a[0])), z = make_list(tostring(line.a.qty)), "
         "y = make_list(tostring(line.a[1].a)), w = make_list(tostring(line.qty[0]))")
    assert fast(q, events)
    same(q, events)


# ---------------------------------------------------------------- a column's paths at once

PDOCS = [
    '{"product":{"name":"Tent","price":2039},"epi":{"language":"sv"}}',
    '{"product":{"name":"Stove","price":"12.5"},"epi":{"language":"en"}}',
    '{"product":{"name":"Tent","price":1.5e3}}', '{"product":[1,2]}', None, "not json",
    '{"product":{"name":{"sv":"Tält"},"price":null}}', '{"product":{"price":7}}',
]


def read_once(query: str, events: pl.DataFrame) -> bool:
    c = engine._compile(query, engine._lazy_tables({"Events": events}), now=NOW,
                        params=None, distinct_json=True)
    return "__jpf_" in c.lf.explain(optimizations=pl.QueryOptFlags(comm_subexpr_elim=False))


B4 = ("Events | where EventType == 'order' | extend price = toreal(Payload.product.price) "
      "| summarize views = count(), revenue = sum(price) by Name = tostring(Payload.product.name)"
      " | sort by views desc, Name asc | project Name, views, revenue")


@pytest.mark.parametrize("query", [
    B4,
    # in the aggregates and the by-clause, with the column itself read too
    "Events | summarize n = count(), s = sum(toreal(Payload.product.price)), "
    "l = make_set(tostring(Payload.epi.language)), w = dcount(tostring(Payload)) "
    "by Name = tostring(Payload['product'].name) | sort by Name asc",
    # '*' and pack_all() see the table's columns, never the hidden ones
    "Events | extend p = toreal(Payload.product.price) "
    "| summarize arg_max(p, *) by tostring(Payload.product.name) | sort by Payload_product_name asc",
    "Events | extend p = toreal(Payload.product.price), n = tostring(Payload.product.name) "
    "| summarize arg_min(p, *), c = count() by n | sort by n asc",
    "Events | extend p = tostring(Payload.product.price), b = pack_all() "
    "| summarize make_list(b) by tostring(Payload.product.name) "
    "| sort by Payload_product_name asc",
])
def test_paths_read_in_one_pass_give_the_per_row_answer(query):
    events = frame(PDOCS)
    assert read_once(query, events)
    same(query, events)


@pytest.mark.parametrize("query", [
    # one path: the per-path reading as before
    "Events | summarize count() by tostring(Payload.product.name) | sort by Payload_product_name asc",
    # Payload redefined before the summarize
    "Events | extend p = Payload.product.price, Payload = dynamic({'product': {'name': 'x'}}) "
    "| summarize count() by tostring(p), tostring(Payload.product.name) | sort by p asc",
    # not followed by a summarize
    "Events | extend p = Payload.product.price, n = Payload.product.name | sort by TrackId asc",
])
def test_other_forms_read_each_path_alone(query):
    events = frame(PDOCS)
    assert not read_once(query, events)
    same(query, events)
