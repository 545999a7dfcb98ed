"""Parenthesized tabular expressions: as a `let` value and as the source of a pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from psanalytics.query.kql import (
    KqlSemanticError,
    KqlSyntaxError,
    KqlUnsupported,
    format,
    kql,
    parse,
)
from psanalytics.query.kql import nodes as N

NOW = datetime(2024, 1, 10, 12, 0, 0, tzinfo=UTC)


def rows(q: str, frame: pl.DataFrame) -> tuple[list[str], list[tuple]]:
    out = kql(q, frame, now=NOW)
    return out.columns, out.rows()


def test_parenthesized_let_value(events):
    q = "let t = (Events | where EventType == 'epiPageView'); t | count"
    assert rows(q, events) == (["Count"], [(2,)])
    assert rows('let t = (Events | where EventType == "order"); t | count', events) == (
        ["Count"], [(1,)])
    q = "let t = (Events | where EventType =~ 'epipageview' | project TrackId, DeviceId); t"
    assert rows(q, events) == (["TrackId", "DeviceId"],
                               [("t1", "d1"), ("t3", "d1"), ("t5", "d4")])


def test_parenthesized_pipeline_source(events):
    q = "(Events | where EventType =~ 'epipageview') | project TrackId | take 2"
    assert rows(q, events) == (["TrackId"], [("t1",), ("t3",)])
    q = "((Events | where CountryCode =~ 'se') | summarize n = count() by DeviceId)" \
        " | sort by DeviceId asc"
    assert rows(q, events) == (["DeviceId", "n"], [("d1", 2), ("d4", 1)])
    # the whole query in parentheses, and a bare table in parentheses
    assert rows("((Events | where City == 'Oslo' | project TrackId))", events) == (
        ["TrackId"], [("t4",)])
    assert rows("((Events)) | count", events) == (["Count"], [(5,)])
    assert rows("(Events)", events)[1] == events.rows()


def test_parenthesized_let_forms_and_let_references(events):
    q = "let t = (Events) | where DeviceId == 'd1'; (t | project TrackId) | take 5"
    assert rows(q, events) == (["TrackId"], [("t1",), ("t3",)])
    assert rows("let t = (Events); t | count", events) == (["Count"], [(5,)])
    q = """let se = Events | where CountryCode == 'SE';
let t = ((se) | project TrackId, City);
let n = 1;
(t | where City != 'Stockholm') | take n"""
    assert rows(q, events) == (["TrackId", "City"], [("t3", "Göteborg")])
    # a parenthesized scalar let is still a scalar
    assert rows("let x = (1 + 2) * 2; Events | take 1 | project y = x", events) == (
        ["y"], [(6,)])


def test_summarize_then_take_keeps_group_order_through_parentheses(events):
    q = "(Events | summarize n = count() by DeviceId) | take 3"
    assert rows(q, events) == (["DeviceId", "n"], [("d1", 2), ("d2", 1), ("d3", 1)])


def test_parentheses_flatten_to_the_same_ast_and_format_round_trips():
    flat = parse("Events | where EventType == 'order' | take 3")
    for q in ("(Events | where EventType == 'order') | take 3",
              "((Events | where EventType == 'order') | take 3)",
              "((Events) | where EventType == 'order') | take 3"):
        ast = parse(q)
        assert ast == flat
        assert format(ast) == 'Events\n| where EventType == "order"\n| take 3'
    ast = parse("let t = (Events | where EventType == 'order'); t | count")
    assert ast == parse("let t = Events | where EventType == 'order'; t | count")
    text = format(ast)
    assert text == 'let t = Events\n| where EventType == "order";\nt\n| count'
    assert parse(text) == ast
    assert format(parse(text)) == text


def test_spans_point_into_the_original_text():
    q = "let t = (Events | where EventType == 'order');\n(t | take 3) | count"
    ast = parse(q)
    let = ast.lets[0]
    assert isinstance(let.value, N.Pipeline)
    assert q[slice(*let.value.span)] == "(Events | where EventType == 'order')"
    assert q[slice(*let.value.source.span)] == "Events"
    assert q[slice(*let.value.ops[0].span)] == "where EventType == 'order'"
    assert q[slice(*ast.body.span)] == "(t | take 3) | count"
    assert q[slice(*ast.body.source.span)] == "t"
    assert [q[slice(*o.span)] for o in ast.body.ops] == ["take 3", "count"]


@pytest.mark.parametrize(("query", "cls", "message", "line", "column"), [
    ("(Events | where EventType == 'order'", KqlSyntaxError,
     "expected ')' to close '(' (a parenthesized tabular expression) but found the end of "
     "the query", 1, 37),
    ("(Events | where EventType == 'order')) | count", KqlSyntaxError,
     "unexpected ')' after the end of the query (expected '|' or the end)", 1, 38),
    ("let t = (Events | take 1)\nt | count", KqlSyntaxError,
     "expected ';' after the let statement but found 't'", 2, 1),
    ("(Events | render barchart) | take 1", KqlSyntaxError,
     "'render' must be the last operator", 1, 11),
    ("( | take 1)", KqlSyntaxError,
     "expected a table name such as 'Events' but found '|'", 1, 3),
    ("(1 + 2) | take 1", KqlSyntaxError,
     "expected a table name such as 'Events' but found '1'", 1, 2),
    ("let t = (Events\n  | where EventTyp == 'x'); t", KqlSemanticError,
     "unknown column or name 'EventTyp' (did you mean 'EventType'?)", 2, 11),
    ("(Evnts | take 1) | count", KqlSemanticError,
     "unknown table 'Evnts' (tables: Events) (did you mean 'Events'?)", 1, 2),
    ("let x = 1; (x | take 1)", KqlSemanticError, "'x' is a scalar let, not a table", 1, 13),
    ("(Events | partition by DeviceId (take 1))", KqlUnsupported,
     "the 'partition' operator is not supported by the local engine", 1, 11),
    ("(Events | join (Events) on DeviceI)", KqlSemanticError,
     "join key 'DeviceI' is not a column of the left side (did you mean 'DeviceId'?)",
     1, 28),
    ("(" * 300 + "Events" + ")" * 300, KqlSyntaxError,
     "tabular expression nested too deeply", 1, 201),
    ("Events | where " + "(" * 2000 + "1", KqlSyntaxError, "expression nested too deeply", 1,
     80),
])
def test_errors_keep_their_positions(events, query, cls, message, line, column):
    with pytest.raises(cls) as ei:
        kql(query, events, now=NOW)
    e = ei.value
    assert type(e) is cls
    assert (e.line, e.column) == (line, column)
    assert str(e).split("\n")[0] == f"{message} at line {line}, column {column}"


def test_deep_nesting_within_the_limits_runs(events):
    q = "(" * 150 + "Events | where " + "(" * 62 + "true" + ")" * 62 + ")" * 150 + " | count"
    assert rows(q, events) == (["Count"], [(5,)])
    assert parse(format(parse(q))) == parse(q)
