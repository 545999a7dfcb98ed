"""Issue 14: mv-apply and top-nested beyond the Kusto docs' own examples (those are in
test_kusto_docs.py): exact rows and columns, and errors with line:column."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from psanalytics.query.kql import (
    KqlSemanticError,
    KqlSyntaxError,
    KqlUnsupported,
    execute,
    format,
    parse,
)

NOW = datetime(2024, 3, 1, tzinfo=UTC)
DT = ("datatable(Val:long, Arr:dynamic) [1, dynamic([3, 1, 2]), 2, dynamic([]), "
      "3, dynamic([5])]\n")


def run(q: str, events: pl.DataFrame | None = None) -> pl.DataFrame:
    return execute(q, {} if events is None else {"Events": events}, now=NOW).frame


def test_mv_apply_take_top_sort_keep_each_rows_own_elements():
    out = run(DT + "| mv-apply e = Arr to typeof(long) on (top 2 by e asc)")
    assert out.columns == ["Val", "Arr", "e"]
    assert out.rows() == [(1, "[3,1,2]", 1), (1, "[3,1,2]", 2), (3, "[5]", 5)]
    out = run(DT + "| mv-apply Arr to typeof(long) on (sort by Arr desc | take 2)")
    assert out.columns == ["Val", "Arr"]  # the element replaces its source column
    assert out.rows() == [(1, 3), (1, 2), (3, 5)]


def test_mv_apply_summarize_gives_one_row_per_input_row_even_for_empty_arrays():
    out = run(DT + "| mv-apply e = Arr to typeof(long) on "
                   "(summarize s = sum(e), n = count(), l = make_list(e))")
    assert out.columns == ["Val", "Arr", "s", "n", "l"]
    assert out.select("Val", "n", "l").rows() == [(1, 3, [3, 1, 2]), (2, 0, []), (3, 1, [5])]
    out = run(DT + "| mv-apply e = Arr to typeof(long) on (where e > 1 | count)")
    assert out.select("Val", "Count").rows() == [(1, 2), (2, 0), (3, 1)]


def test_mv_apply_itemindex_project_and_events_payload(events):
    out = run(DT + "| mv-apply with_itemindex = i e = Arr on "
                   "(where i >= 1 | project x = strcat('#', i), e)")
    assert out.columns == ["Val", "Arr", "x", "e"]
    assert out.rows() == [(1, "[3,1,2]", "#1", "1"), (1, "[3,1,2]", "#2", "2")]
    out = run("Events | where isnotnull(Payload.tags) | mv-apply t = Payload.tags to "
              "typeof(string) on (summarize tags = make_list(t), n = count()) "
              "| project DeviceId, tags, n", events)
    assert out.rows() == [("d1", ["x", "y"], 2)]


def test_mv_apply_errors_point_at_the_subquery():
    with pytest.raises(KqlUnsupported) as e:
        run(DT + "| mv-apply e = Arr on (\n  make-series n = count() on e step 1)")
    assert e.value.line == 3 and e.value.column == 3
    assert "'make-series' inside mv-apply is not supported" in e.value.message
    with pytest.raises(KqlSyntaxError) as e:
        run(DT + "| mv-apply e = Arr take 1")
    assert (e.value.line, e.value.column) == (2, 20)
    assert "expected 'on'" in e.value.message


def test_mv_apply_round_trips():
    q = ("T | mv-apply with_itemindex=i a = x to typeof(long), y limit 3 on "
         "(top 1 by a | summarize make_list(y))")
    ast = parse(q)
    assert parse(format(ast)) == ast
    assert format(ast) == ("T\n| mv-apply with_itemindex=i a = x to typeof(long), y limit 3 "
                           "on (top 1 by a | summarize make_list(y))")


STORMS = ("datatable(State:string, Type:string, Loc:string, Dmg:long) ["
          "'A', 'w', 'x', 10, 'A', 'w', 'y', 5, 'A', 'h', 'x', 3, 'A', 'f', 'z', 1, "
          "'B', 'w', 'x', 7, 'B', 'i', 'y', 2, 'C', 'w', 'x', 4]\n")


def test_top_nested_three_levels_with_others():
    out = run(STORMS + "| top-nested 2 of State with others = 'Other' by sum(Dmg),\n"
                       "  top-nested 1 of Type with others = 'rest' by sum(Dmg),\n"
                       "  top-nested 1 of Loc by Worst = max(Dmg)")
    assert out.columns == ["State", "aggregated_State", "Type", "aggregated_Type", "Loc",
                           "Worst"]
    assert out.rows() == [("A", 19, "w", 15, "x", 10), ("A", 19, "rest", 4, None, None),
                          ("B", 9, "w", 7, "x", 7), ("B", 9, "rest", 2, None, None),
                          ("Other", 4, None, None, None, None)]


def test_top_nested_without_count_asc_and_computed_values():
    out = run(STORMS + "| top-nested of State by n = count() asc, "
                       "top-nested 1 of L = strcat(Loc, '!') by sum(Dmg)")
    assert out.columns == ["State", "n", "L", "aggregated_L"]
    assert out.rows() == [("C", 1, "x!", 4), ("B", 2, "x!", 7), ("A", 4, "x!", 13)]
    with pytest.raises(KqlSemanticError) as e:
        run(STORMS + "| top-nested 2 of State with others = 1 by sum(Dmg)")
    assert e.value.message == "the 'with others' value is long but the top-nested value is " \
                              "string"
    assert (e.value.line, e.value.column) == (2, 39)


def test_top_nested_round_trips():
    q = "T | top-nested 2 of a with others = 'x' by s = sum(b) asc, top-nested of c by max(1)"
    ast = parse(q)
    assert parse(format(ast)) == ast


def test_bare_null_is_a_null_literal():
    assert run("print x = null, y = isnull(null), z = coalesce(null, 2)").rows() == [
        (None, True, 2)]
    out = run("datatable(a:long, s:string) [1, 'a', null, null] | extend b = iff(a > 0, a, "
              "null) | where isnull(a) or b == 1")
    assert out.rows() == [(1, "a", 1), (None, "", None)]
    assert parse("print x = null") == parse("print x = dynamic(null)")
    assert format(parse("T | where x == null")) == "T\n| where x == dynamic(null)"
    assert run("print x = null == int(null)").rows() == [(None,)]


def test_make_series_nonempty_constants_and_typed_mv_expand():
    base = ("datatable(T:datetime, V:long) [datetime(2024-01-01), 5, datetime(2024-01-03), 7]"
            "\n| ")
    out = run(base + "take 0 | make-series n = count() on T from datetime(2024-01-01) to "
                     "datetime(2024-01-03) step 1d")
    assert out.height == 0  # no input row, no series
    out = run(base + "take 0 | make-series kind=nonempty n = count() default = 9 on T from "
                     "datetime(2024-01-01) to datetime(2024-01-03) step 1d")
    assert out["n"].to_list() == [[9, 9]]
    out = run(base + "make-series s = sum(V), c = -1 default = -2 on T from "
                     "datetime(2024-01-01) to datetime(2024-01-04) step 1d\n"
                     "| mv-expand s, c, T | extend d = dayofmonth(T), s2 = s * 2")
    assert out.columns == ["s", "c", "T", "d", "s2"]
    assert out.select("d", "s2", "c").rows() == [(1, 10, -1), (2, 0, -2), (3, 14, -1)]
    assert format(parse("T | make-series kind=nonempty n = count() on t step 1d")) == \
        "T\n| make-series kind=nonempty n = count() on t step 1d"


LOG = ("datatable(t:string) ['n=1, at=02/17/2016 08:40:01.', 'n=x, at=02/17/2016 08:40:02.', "
       "'n=3, at=soon.']\n")


def test_parse_kinds_on_typed_columns():
    q = "| parse{} t with 'n=' n:long ', at=' at:datetime '.'"
    simple = run(LOG + q.format(""))
    assert simple.rows() == [(LOG_T1, 1, AT1), (LOG_T2, None, None), (LOG_T3, None, None)]
    relaxed = run(LOG + q.format(" kind=relaxed"))
    assert relaxed.rows() == [(LOG_T1, 1, AT1), (LOG_T2, None, AT2), (LOG_T3, 3, None)]
    assert run(LOG + q.format("-where")).rows() == [(LOG_T1, 1, AT1)]
    out = run(LOG + "| parse kind=regex flags=U t with 'n=' n ',' * '(at|on)=' at '[.]'")
    assert out.select("n", "at").rows() == [("1", "02/17/2016 08:40:01"),
                                            ("x", "02/17/2016 08:40:02"), ("3", "soon")]


LOG_T1, LOG_T2, LOG_T3 = ("n=1, at=02/17/2016 08:40:01.", "n=x, at=02/17/2016 08:40:02.",
                          "n=3, at=soon.")
AT1 = datetime(2016, 2, 17, 8, 40, 1, tzinfo=UTC)
AT2 = datetime(2016, 2, 17, 8, 40, 2, tzinfo=UTC)


def test_print_with_parentheses_prints_the_value():
    # found by test_format_round_trips_whatever_parses: `print (...)` at the end of a
    # query was read as a call of a tabular function named print
    assert format(parse("print(1)")) == "print 1"
    assert run("print (1), x = 2").rows() == [(1, 2)]
    with pytest.raises(KqlSyntaxError):
        parse("union (T | project a), print (print a = 'z')")


def test_union_name_patterns():
    lets = ("let View_1 = view () { print x = 1 };\nlet View_2 = view () { print x = 2 };\n"
            "let Other = datatable(x:long) [3];\n")
    out = run(lets + "union withsource = T View*, Oth* | sort by x asc")
    assert out.rows() == [("View_1", 1), ("View_2", 2), ("Other", 3)]
    assert run(lets + "union isfuzzy=true Nothing*, View_1").rows() == [(1,)]
    with pytest.raises(KqlSemanticError) as e:
        run(lets + "union Nothing*, View_1")
    assert e.value.message == ("union: no table matches 'Nothing*' (isfuzzy=true leaves such "
                               "a pattern out)")
    assert (e.value.line, e.value.column) == (4, 7)
    with pytest.raises(KqlSyntaxError) as e:
        run(lets + "Other | join View* on x")
    assert e.value.message == "a table name pattern is only allowed in union"
    ast = parse("union isfuzzy=true withsource=S View*, (T | take 1)")
    assert format(ast) == "union withsource=S isfuzzy=true View*, (T\n| take 1)"
    assert parse(format(ast)) == ast


def test_search_as_a_source():
    lets = ("let A = datatable(x:long, s:string) [1, 'a', 5, 'b'];\n"
            "let B = datatable(x:long) [5, 6];\n")
    out = run(lets + "search x == 5 | sort by ['$table'] asc")
    assert out.columns == ["$table", "x", "s"]
    assert out.rows() == [("A", 5, "b"), ("B", 5, "")]
    assert run(lets + "search in (B) *").rows() == [("B", 5), ("B", 6)]
    assert run(lets + "search in (A*) s has 'a' or x > 4").height == 2
    with pytest.raises(KqlUnsupported) as e:
        run(lets + "search 'err' and x == 5")
    assert (e.value.line, e.value.column) == (3, 8)
    assert "search terms over every column are not supported" in e.value.message
    ast = parse("search kind=case_insensitive in (T, V*) x == 1")
    assert format(ast) == "search kind=case_insensitive in ((T), V*) x == 1"
    assert parse(format(ast)) == ast


JOIN_L = ("let L = datatable(k:string, s:string, v:long) [\"a\", \"s1\", 1, \"a\", \"s1\", 2, "
          "\"a\", \"s2\", 3, \"b\", \"s3\", 4, \"c\", \"s4\", 5, \"b\", \"s3\", 6];\n"
          "let R = datatable(k:string, w:long) [\"a\", 10, \"a\", 20, \"c\", 30, \"d\", 40];\n")


@pytest.mark.parametrize(("query", "rows"), [
    # inner: every distinct (k, s) of L whose k is in R, once per matching R row
    ("L | distinct k, s | join kind=inner (R) on k | project k, s, w | sort by s asc, w asc",
     [("a", "s1", 10), ("a", "s1", 20), ("a", "s2", 10), ("a", "s2", 20), ("c", "s4", 30)]),
    # innerunique (the default): the first distinct row of each k, then every match
    ("L | distinct k, s | join (R) on k | project k, s, w | sort by s asc, w asc",
     [("a", "s1", 10), ("a", "s1", 20), ("c", "s4", 30)]),
    ("L | distinct * | join kind=inner (R | project kk = k, w) on $left.k == $right.kk "
     "| summarize n = count(), t = sum(v + w)",
     [(7, 2 * (1 + 2 + 3) + 3 * 10 + 3 * 20 + 5 + 30)]),
])
def test_a_join_after_distinct_reads_only_rows_whose_key_joins(query, rows):
    out = run(JOIN_L + query)
    assert out.rows() == rows
    # the distinct's input is filtered on R's keys first (a semi join in the plan)
    from psanalytics.query.kql import plan
    assert "SEMI JOIN" in plan(JOIN_L + query, {}, now=NOW).explain()
    # the same answer as without that filter (a column added after the distinct hides it)
    plain = query.replace("| join", "| extend _z = 0 | project-away _z | join", 1)
    assert "SEMI JOIN" not in plan(JOIN_L + plain, {}, now=NOW).explain()
    assert run(JOIN_L + plain).rows() == rows


def test_top_nested_breaks_ties_by_first_appearance():
    # two values with the same aggregate: the one seen first is kept, on every run
    q = ("datatable(k:string, d:string) [\"b\", \"x\", \"a\", \"y\", \"a\", \"z\", \"b\", \"w\"]"
         " | top-nested 1 of k by count(), top-nested 1 of d by c = count()")
    for _ in range(20):
        assert run(q).rows() == [("b", 2, "x", 1)]
