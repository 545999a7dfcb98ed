"""Property tests: random token soup and mutations of valid queries never raise anything
but KqlError, and every error points inside the query (1-based line and column)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from psanalytics import schema
from psanalytics.query.kql import KqlError, execute, format, parse

NOW = datetime(2024, 1, 10, tzinfo=UTC)

FRAME = schema.normalize([
    {"DeviceId": "d1", "EventType": "epiPageView", "EventTime": "2024-01-01T10:00:00Z",
     "CountryCode": "SE", "User": {"Email": "a@b.se", "Name": "A"},
     "Payload": {"name": "Home", "price": 3.5, "epi": {"language": "sv"}}},
    {"DeviceId": "d2", "EventType": "order", "EventTime": None, "CountryCode": "",
     "Payload": None},
])

VALID = [
    "Events | where EventType == 'epiPageView' and CountryCode == 'SE' | take 100",
    "Events | summarize count() by bin(EventTime, 1d)",
    "Events | summarize dcount(DeviceId) by CountryCode | top 3 by dcount_DeviceId",
    "let since = ago(7d);\nEvents\n| where EventTime > since\n| extend p = toreal(Payload.price)"
    "\n| summarize n = count(), s = sum(p) by CountryCode\n| sort by n desc nulls last",
    "Events | where Value has_any ('a', 'b') or Payload['epi'].language in~ ('SV')"
    " | project-away User | render timechart with (title='x')",
    "Events | extend d = endofday(EventTime, -1), t = tostring(EventTime) | distinct d, t",
    "Events | where EventTime between (datetime(2024-01-01) .. 1d) | count",
    "let T = Events | take 1; T | project x = strcat('a', DeviceId), y = iff(true, 1, 2)",
    "Events | summarize arg_max(EventTime, *), make_set(City, 5) by User.Email",
    'Events | where PageUri matches regex @"^https?://" | project-rename U = PageUri',
    "let T = (Events | where EventType == 'order'); (T | project DeviceId) | take 2",
    # issue 14: table sources, functions and the operators beyond the subset
    "print x = 1, y = 'a', 1 + 2",
    "datatable(a:long, b:string, c:dynamic) [1, 'x', dynamic([1, 2]), 2, 'y', dynamic(null)]"
    " | where a > 1",
    "range x from 1 to 5 step 2 | extend y = x * 2",
    "let f = (n:long, m:long = 2) { n * m }; Events | extend d = f(3) | project d, DeviceId",
    "let T = (t:(*), n:long) { t | take n }; T(Events, 1) | count",
    "let V = view () { Events | project DeviceId }; V | count",
    "Events | join kind=leftouter (Events | project DeviceId, x = 1) on DeviceId | take 3",
    "Events | join kind=leftanti (Events | take 1) on $left.DeviceId == $right.DeviceId",
    "Events | lookup (Events | distinct DeviceId, EventType) on DeviceId, EventType",
    "Events | union withsource=S (Events | take 1) | summarize count() by S",
    "union kind=inner (Events | project DeviceId), (print DeviceId = 'z')",
    "Events | mv-expand with_itemindex=i a = Payload.epi.ancestors to typeof(string) | take 3",
    "Events | parse Value with 'a' rest:string | parse-where City with * 'x' y | take 1",
    "Events | make-series n = count() default = 0 on EventTime from datetime(2024-01-01) to"
    " datetime(2024-01-02) step 1h by CountryCode",
    "Events | serialize n = 1 | sample 5 | sample-distinct 3 of DeviceId",
    "Events | project-reorder EventType, Dev* asc | getschema",
    "Events | as T | join (T) on DeviceId | count",
    "let x = toscalar(Events | count); print x",
    "Events | where DeviceId in (Events | project DeviceId) | count",
    "let m = materialize(Events | take 1); m | union m | count",
    "Events | mv-apply with_itemindex=i e = pack_array(1, 2) to typeof(long) on (top 1 by e"
    " | summarize s = sum(e), n = count()) | project DeviceId, s, n",
    "Events | top-nested 1 of CountryCode with others = 'rest' by count(), top-nested of"
    " DeviceId by m = max(EventTime) asc",
    "search in (Events, Ev*) DeviceId == 'd1' or CountryCode has 'SE' | count",
    "union isfuzzy=true withsource=T Ev*, Nothing* | parse kind=relaxed Value with n:long"
    " ' ' rest | make-series kind=nonempty c = count() on EventTime step 1d",
]

VOCAB = [
    "Events", "T", "|", "where", "Where", "project", "extend", "summarize", "by", "count",
    "take", "top", "sort", "order", "asc", "desc", "nulls", "first", "last", "render",
    "with", "let", "=", "==", "!=", "=~", "!~", "<", ">", "<=", ">=", "+", "-", "*", "/", "%",
    "(", ")", "[", "]", "{", "}", ",", ";", ".", "..", ":", "and", "or", "not", "in", "in~",
    "!in", "has", "!has", "contains", "between", "!between", "matches", "regex",
    "EventType", "EventTime", "Payload", "User", "Email", "DeviceId", "count()", "dcount",
    "bin", "ago", "now()", "datetime(2024-01-01)", "datetime(", "time(1.02:03:04)", "1d",
    "1x", "1.5h", "42", "-1", "3.14", "1e5", "'a'", '"b"', "@'c\\'", "'unterminated",
    "dynamic([1,2])", "dynamic([1,'a',{\"b\":2}])", "dynamic(null)", "dynamic({\"a\":1})", "true", "false", "null", "long(null)", "['x y']",
    "//c\n", "\n", "\t", "`", "#", "$", "?", "!", "@", "h'x'", "```m```", "project-away",
    "join", "union", "mv-expand", "tostring", "toreal", "iff", "strcat", "*", "arg_max",
    "print", "datatable", "datatable(a:long)", "range", "x", "from", "to", "step", "kind=inner",
    "on", "$left.DeviceId", "$right.DeviceId", "lookup", "parse", "with", "make-series",
    "serialize", "sample", "sample-distinct", "of", "getschema", "as", "toscalar(", "{{p}}",
    "view", "{", "}", "(x:long)", "typeof(long)", "withsource=S", "materialize(",
    "mv-apply", "top-nested", "others", "with_itemindex=i", "search", "Ev*", "isfuzzy=true",
    "kind=relaxed", "kind=regex", "flags=U", "kind=nonempty",
]


def check(query: str) -> None:
    try:
        execute(query, {"Events": FRAME}, now=NOW, limit=10)
    except KqlError as e:
        if e.line is None:
            return  # only errors with no location in the text (none expected here)
        lines = query.split("\n")
        assert 1 <= e.line <= len(lines), (e.line, query)
        assert 1 <= e.column <= len(lines[e.line - 1]) + 1, (e.column, query)
        assert e.snippet is not None and "^" in e.snippet


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(VOCAB), min_size=0, max_size=14),
       st.sampled_from([" ", "", "\n"]))
def test_token_soup_only_kql_errors(tokens, sep):
    check(sep.join(tokens))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.data())
def test_mutations_only_kql_errors(query, data):
    q = query
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["delete", "insert", "replace", "dup"]))
        i = data.draw(st.integers(0, len(q)))
        j = data.draw(st.integers(i, min(len(q), i + 8)))
        if kind == "delete":
            q = q[:i] + q[j:]
        elif kind == "insert":
            q = q[:i] + data.draw(st.sampled_from(VOCAB)) + q[i:]
        elif kind == "replace":
            q = q[:i] + data.draw(st.text(max_size=3)) + q[j:]
        else:
            q = q[:i] + q[i:j] + q[i:j] + q[j:]
    check(q)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_only_kql_errors(text):
    check(text)


@pytest.mark.parametrize("query", VALID)
def test_valid_queries_run_and_round_trip(query):
    res = execute(query, {"Events": FRAME}, now=NOW)
    assert isinstance(res.frame, pl.DataFrame)
    ast = parse(query)
    text = format(ast)
    assert parse(text) == ast
    again = execute(text, {"Events": FRAME}, now=NOW)
    assert again.frame.columns == res.frame.columns
    assert sorted(map(repr, again.frame.rows())) == sorted(map(repr, res.frame.rows()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.data())
def test_format_round_trips_whatever_parses(query, data):
    q = query
    for _ in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(q)))
        q = q[:i] + data.draw(st.sampled_from(VOCAB)) + " " + q[i:]
    try:
        ast = parse(q)
    except KqlError:
        return
    text = format(ast)
    assert parse(text) == ast, (q, text)
    assert format(parse(text)) == text


# ---------------------------------------------------------------- grammar-aware queries

_COLS = ["DeviceId", "EventType", "EventTime", "City", "CountryCode", "Payload", "User",
         "Payload.price", "Payload.epi.language", "User.Email", "Payload['name']"]
_LITS = ["1", "2.5", "'SE'", '"x"', "1d", "2h", "datetime(2024-01-01)", "true", "null",
         "dynamic(['a'])", "dynamic(null)", "long(null)", "time(null)", "-3", "0",
         "'yyyy-M-d H:mm:ss.FFF tt'", "dynamic([5, 50])"]
_OPS = ["==", "!=", "<", ">", "=~", "has", "contains", "startswith", "+", "-", "*", "/", "%",
        "and", "or", "!has", "in~"]


def _random_query(rnd) -> str:
    from psanalytics.query.kql.functions import AGGREGATES, SCALAR_FUNCTIONS

    # the catalogue: every registered function, and the multi-column aggregates
    # (arg_max/arg_min/percentiles) that summarize compiles itself
    funcs, aggs = sorted(SCALAR_FUNCTIONS), sorted(AGGREGATES)

    def expr(d: int = 0) -> str:
        r = rnd.random()
        if d > 2 or r < 0.3:
            return rnd.choice(_COLS + _LITS)
        if r < 0.6:
            args = ", ".join(expr(d + 1) for _ in range(rnd.randint(0, 3)))
            return f"{rnd.choice(funcs)}({args})"
        if r < 0.7:
            return f"{expr(d + 1)} in ({expr(d + 1)}, {rnd.choice(_LITS)})"
        if r < 0.75:
            return f"{expr(d + 1)} between ({expr(d + 1)} .. {expr(d + 1)})"
        return f"{expr(d + 1)} {rnd.choice(_OPS)} {expr(d + 1)}"

    def op() -> str:
        agg = f"{rnd.choice(aggs)}({', '.join(expr(1) for _ in range(rnd.randint(0, 3)))})"
        return rnd.choice([
            "where " + expr(), "extend x = " + expr(), f"project {expr()}, {expr()}",
            "summarize " + agg + (" by " + expr() if rnd.random() < 0.6 else ""),
            "sort by " + expr() + rnd.choice(["", " asc", " desc nulls first"]),
            "top 2 by " + expr(), "take 3", "distinct " + rnd.choice(_COLS), "count",
            "project-away " + rnd.choice(["City", "Pay*", "x"])])

    return "Events | " + " | ".join(op() for _ in range(rnd.randint(1, 3)))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_grammar_aware_queries_fail_only_with_precise_kql_errors(rnd):
    q = _random_query(rnd)
    try:
        execute(q, {"Events": FRAME}, now=NOW, limit=10)
    except KqlError as e:
        # the compile-time safety net and runtime failures would mean an engine bug
        assert "could not compile" not in e.message, (q, e.message)
        assert e.kind != "KqlRuntimeError", (q, e.message)
        assert e.line is not None and e.column is not None
