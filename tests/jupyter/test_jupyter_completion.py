"""Tab completion in %kql / %%kql: exact lists at given cursor positions, then through
IPython's own completer (what JupyterLab's Tab asks the kernel)."""

from __future__ import annotations

import polars as pl
import pytest

from psanalytics import schema
from psanalytics.jupyter.completion import OPTIONS, RENDER_KINDS, catalogue, complete


@pytest.fixture(scope="module")
def ns() -> dict:
    events = schema.normalize(
        [
            {
                "TrackId": "t1",
                "DeviceId": "d1",
                "EventType": "order",
                "EventTime": "2024-03-04T10:00:00Z",
                "Payload": {"sku": "X1", "order": {"total": 5, "currency": "EUR"}},
            },
            {
                "TrackId": "t2",
                "DeviceId": "d1",
                "EventType": "search",
                "EventTime": "2024-03-04T10:01:00Z",
                "Payload": {"query": "tent", "hits": [1, 2]},
            },
        ]
    )
    return {"events": events, "other": pl.DataFrame({"zz_col": [1], "zz_two": ["a"]}), "n": 5}


def test_operators_right_after_a_pipe(ns):
    assert complete("%kql Events | whe", ns) == ("whe", [("where", "operator")])
    assert complete("x = %kql Events | summ", ns) == ("summ", [("summarize", "operator")])
    fragment, items = complete("%kql Events |", ns)
    ops, _, _ = catalogue()
    assert fragment == "" and items == [(o, "operator") for o in ops]
    assert {"where", "summarize", "extend", "project", "take", "render", "mv-expand"} <= set(ops)


def test_columns_of_the_bound_frame_at_that_stage(ns):
    assert complete("%kql Events | where Ev", ns) == (
        "Ev",
        [("EventType", "column"), ("EventTime", "column")],
    )
    # extend adds a column, project keeps only what it names
    assert complete("%kql Events | extend zed = 1 | where ze", ns) == ("ze", [("zed", "column")])
    assert complete("%kql Events | project DeviceId, EventType | where Ev", ns) == (
        "Ev",
        [("EventType", "column")],
    )
    # --local FRAME binds that frame; %%kql reads the options on its first line
    assert complete("%kql --local other Events | where zz", ns) == (
        "zz",
        [("zz_col", "column"), ("zz_two", "column")],
    )
    assert complete("%%kql --local=other\nEvents\n| where zz_t", ns) == (
        "zz_t",
        [("zz_two", "column")],
    )


def test_payload_keys_seen_in_the_frame_and_struct_fields(ns):
    assert complete("%%kql\nEvents\n| where Payload.", ns) == (
        "Payload.",
        [
            ("Payload.hits", "Payload key"),
            ("Payload.order", "Payload key"),
            ("Payload.order.currency", "Payload key"),
            ("Payload.order.total", "Payload key"),
            ("Payload.query", "Payload key"),
            ("Payload.sku", "Payload key"),
        ],
    )
    assert complete("%kql Events | extend t = Payload.order.t", ns) == (
        "Payload.order.t",
        [("Payload.order.total", "Payload key")],
    )
    assert complete("%kql Events | where User.", ns) == (
        "User.",
        [("User.Email", "field"), ("User.Name", "field"), ("User.Info", "field")],
    )


def test_functions_everywhere_aggregates_only_where_they_aggregate(ns):
    assert complete("%kql Events | extend x = tolow", ns) == ("tolow", [("tolower", "function")])
    assert complete("%kql Events | summarize countif", ns) == (
        "countif",
        [("countif", "aggregate")],
    )
    assert complete("%kql Events | where countif", ns) == ("countif", [])


def test_options_frames_tables_and_render_kinds(ns):
    assert complete("%kql --lo", ns) == ("--lo", [("--local", "option")])
    assert complete("%%kql top << --l", ns) == (
        "--l",
        [("--local", "option"), ("--limit", "option")],
    )
    assert complete("%kql --local o", ns) == ("o", [("other", "frame")])
    assert complete("%kql Ev", ns) == ("Ev", [("Events", "table"), ("events", "frame")])
    assert complete("%kql Events | render ", ns) == ("", [(k, "render kind") for k in RENDER_KINDS])
    assert complete("%kql --", ns) == ("--", [(o, "option") for o in OPTIONS])


def test_no_completion_outside_a_query_or_inside_a_literal(ns):
    assert complete("print(eve", ns) is None
    assert complete("%kql Events | where EventType == 'ord", ns) is None
    assert complete("%kql Events | where EventTime > ago(1d", ns) is None
    assert complete("%kql Events | where x == 1 // a comment Ev", ns) is None
    # a backslash escapes in "..." (the string is still open) but not in @"..." (closed)
    assert complete('%kql Events | where x == "a\\" | whe', ns) is None
    assert complete('%kql Events | where x == @"a\\" | whe', ns) == ("whe", [("where", "operator")])


def test_through_ipython_completer(shell):
    from IPython.core.completer import provisionalcompleter

    shell.user_ns["events"] = shell.user_ns["events"].with_columns(pl.lit("x").alias("Zeta"))

    def ask(text: str) -> list[tuple[str, int, int, str]]:
        with provisionalcompleter():
            found = shell.Completer.completions(text, len(text))
            return [(c.text, c.start, c.end, c.type) for c in found]

    assert ask("%kql Events | whe") == [("where", 14, 17, "operator")]
    assert ask("%%kql\nEvents\n| where Ze") == [("Zeta", 21, 23, "column")]
    # ordinary Python completion is left alone
    assert ("events", 6, 9, "instance") in ask("print(eve")
