"""Issue 14: table sources, let functions and the operators beyond the Profile Store subset,
on Events-shaped frames (the Kusto docs' own examples are in test_kusto_docs.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from psanalytics.query.kql import (
    KqlRuntimeError,
    KqlSemanticError,
    KqlSyntaxError,
    KqlUnsupported,
    execute,
    format,
    kql,
    parse,
)

NOW = datetime(2024, 3, 1, tzinfo=UTC)


def run(q: str, events: pl.DataFrame | None = None, **kw) -> pl.DataFrame:
    tables = {} if events is None else {"Events": events}
    return execute(q, tables, now=NOW, **kw).frame


def test_queries_without_events(events):
    assert run("print x = 1 + 2, 'a'").rows() == [(3, "a")]
    assert run("print x = 1 + 2, 'a'").columns == ["x", "print_0"]
    assert run("range x from 1 to 10 step 4").rows() == [(1,), (5,), (9,)]
    assert run("range t from datetime(2024-01-01) to datetime(2024-01-02) step 12h")[
        "t"].to_list() == [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 12, tzinfo=UTC),
                           datetime(2024, 1, 2, tzinfo=UTC)]
    dt = run("datatable(k:string, n:long) ['a', 1, 'b', int(null)] | where isnull(n)")
    assert dt.rows() == [("b", None)]


def test_let_functions_views_toscalar_and_as(events):
    q = ("let f = (n:long, m:long = 10) { n * m }; "
         "let top_types = (T:(EventType:string), k:long) { T | summarize c = count() by "
         "EventType | top k by c }; "
         "top_types(Events, 1) | extend x = f(2), y = f(2, 3)")
    assert run(q, events).rows() == [("epiPageView", 2, 20, 6)]
    assert run("let V = view () { Events | where CountryCode == 'SE' }; V | count",
               events).rows() == [(2,)]
    assert run("let n = toscalar(Events | count); print n", events).rows() == [(5,)]
    assert run("Events | as T | where DeviceId in (T | where EventType == 'order' "
               "| project DeviceId) | count", events).rows() == [(1,)]


def test_join_kinds_on_events(events):
    orders = "(Events | where EventType == 'order' | project DeviceId, Total = 1)"
    base = "Events | project DeviceId, EventType "
    inner = run(f"{base}| join kind=inner {orders} on DeviceId", events)
    assert inner.columns == ["DeviceId", "EventType", "DeviceId1", "Total"]
    assert inner.rows() == [("d2", "order", "d2", 1)]
    # innerunique (the default) keeps one left row per key
    pages = "(Events | where EventType == 'epiPageView' | project DeviceId, p = TrackId)"
    assert run(f"{base}| join kind=inner {pages} on DeviceId | count", events).rows() == [(4,)]
    assert run(f"{base}| join {pages} on DeviceId | count", events).rows() == [(2,)]
    assert run(f"{base}| join kind=leftanti {orders} on DeviceId | count",
               events).rows() == [(4,)]
    assert run(f"{base}| join kind=leftsemi {orders} on $left.DeviceId == $right.DeviceId "
               "| count", events).rows() == [(1,)]
    outer = run(f"{base}| join kind=leftouter {orders} on DeviceId | where DeviceId == 'd3'",
                events)
    assert outer.rows() == [("d3", "basket", "", None)]  # strings are never null


def test_mv_expand_and_make_series():
    t = ("datatable(id:long, xs:dynamic) [1, dynamic([10, 20]), 2, dynamic([]), "
         "3, dynamic(null)]")
    out = run(t + " | mv-expand with_itemindex=i x = xs to typeof(long)")
    assert out.select("id", "x", "i").rows() == [(1, 10, 0), (1, 20, 1), (3, None, 0)]
    ms = run("datatable(t:datetime, k:string) [datetime(2024-01-01 01:00), 'a', "
             "datetime(2024-01-01 03:30), 'a'] | make-series n = count() default = 0 on t "
             "from datetime(2024-01-01) to datetime(2024-01-01 04:00) step 1h by k")
    assert ms.columns == ["k", "n", "t"]
    assert ms.row(0)[:2] == ("a", [0, 1, 0, 1])


def test_placeholders_and_sample(events):
    # {{name}} (Profile Store filter definitions) is filled from params, never by text
    q = "Events | where EventType == {{etype}} | sample 10 | project TrackId"
    assert run(q, events, params={"etype": "order"}).rows() == [("t2",)]
    with pytest.raises(KqlSemanticError) as ei:
        run(q, events)
    assert (ei.value.line, ei.value.column) == (1, 29)  # at the {{etype}}
    assert format(parse("Events | where EventType == {{etype}}")) == \
        "Events\n| where EventType == etype"


def test_errors_keep_positions_and_scope():
    with pytest.raises(KqlUnsupported) as ei:
        run("print 1 | evaluate bag_unpack(x)")
    assert (ei.value.line, ei.value.column) == (1, 11) and "out of scope" in ei.value.message
    with pytest.raises(KqlSyntaxError) as ei:
        run("datatable(a:long) [1, 2\n| count")
    assert ei.value.line == 2
    with pytest.raises(KqlSemanticError) as ei:
        run("datatable(a:long) [1] | join (print b = 1) on b")
    assert "not a column of the left side" in ei.value.message


def test_wrong_answers_from_the_issue():
    row = run("print a = -14 % 12, b = 14 % -12, c = int(null) == int(null), d = 1 == int(null), "
              "e = substring('123456', -2, 2), f = split('a,b,c', ',', 1), "
              "g = countof('aaaa', 'aa'), h = countof('ababa', 'aba', 'regex'), "
              "i = round(21.5, -1)").row(0)
    assert row == (10, 2, None, False, "56", ["b"], 3, 1, 20.0)
    agg = run("datatable(x:long, a:dynamic) [1, dynamic([1, 2]), int(null), dynamic([2, 3])]"
              " | summarize count(x), s = make_set(a)").rows()
    assert agg == [(2, "[1,2,3]")]  # dynamic results come back as JSON text


def test_internal_failures_are_runtime_errors(monkeypatch):
    from psanalytics.query.kql import compiler

    def boom(*a, **k):
        raise ValueError("boom")
    monkeypatch.setattr(compiler.Compiler, "src_print", boom)
    with pytest.raises(KqlRuntimeError) as ei:
        kql("print 1")
    assert "internal error" in ei.value.message and not isinstance(ei.value, KqlUnsupported)


def test_single_equals_suggests_double():
    for q, col in (("Events | where EventType = 'x'", 26), ("print x = 1 | where x = 1", 23),
                   ("datatable(a:long) [1] | where (a = 1)", 34)):
        with pytest.raises(KqlSyntaxError) as ei:
            run(q)
        assert (ei.value.line, ei.value.column, ei.value.suggestion) == (1, col, "==")
        assert "use '=='" in ei.value.message


def test_array_literal_column_broadcasts(events):
    # found by the hypothesis suite: a dynamic array literal as a column of a 5-row table
    out = run("Events | project dynamic(['a']), TrackId | sort by TrackId asc | take 2", events)
    assert out.rows() == [(["a"], "t1"), (["a"], "t2")]
