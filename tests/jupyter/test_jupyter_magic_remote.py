"""%kql against the preview endpoint of an emulated Profile Store (in-process, no sockets)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from jupyter_helpers import make_store

from psanalytics import samples
from psanalytics.jupyter.magic import KqlComparison, KqlMagicError, typed_remote
from psanalytics.jupyter.widgets import KqlConsole

BY_TYPE = "Events | summarize n = count() by EventType | sort by n desc, EventType asc"


def test_remote_is_the_default_and_returns_a_polars_frame(remote_shell):
    r = remote_shell.run_cell(f"%kql {BY_TYPE}")
    assert r.success, r.error_in_exec
    assert type(r.result) is pl.DataFrame
    assert r.result.rows() == [("home", 3), ("product", 3), ("basket", 1), ("order", 1)]
    run = remote_shell.user_ns["_kql_last"]
    assert (run.engine, run.source, run.truncated) == ("remote", "emulator, scope 'default'", False)
    data, _ = remote_shell.display_formatter.format(r.result)
    assert "kql remote on emulator, scope 'default' · 4 rows · " in data["text/plain"]


def test_remote_params_are_sent_as_lets(remote_shell):
    r = remote_shell.run_cell(
        "%kql --param t=order Events | where EventType == t | project DeviceId"
    )
    assert r.success, r.error_in_exec
    assert r.result.rows() == [("d2",)]
    r = remote_shell.run_cell(
        "%kql --param \"t=x' or 1 == 1 or 'a\" Events | where EventType == t | count"
    )
    assert r.result.rows() == [(0,)]


def test_remote_datetimes_come_back_typed(remote_shell):
    r = remote_shell.run_cell("%kql Events | summarize latest = max(EventTime), n = count()")
    assert r.success, r.error_in_exec
    assert r.result.schema["latest"] == pl.Datetime("ns", "UTC")
    assert str(r.result["latest"][0]) == "2024-03-04 12:06:00+00:00"


def test_remote_errors_are_caught_before_any_request(remote_shell):
    r = remote_shell.run_cell("%kql Events | where EventTyp == 'x'")
    err = r.error_in_exec
    assert isinstance(err, KqlMagicError)
    assert (err.error.line, err.error.column) == (1, 16)
    assert "did you mean 'EventType'" in str(err)
    assert remote_shell.user_ns["store"].emulator.state()["requests"] == 0  # nothing was sent


def test_remote_limit_and_the_1000_row_cap(shell):
    shell.user_ns["store"] = make_store(samples.generate(1_200, seed=4))
    r = shell.run_cell("%kql Events | project EventType")
    assert r.result.height == 1_000
    data, _ = shell.display_formatter.format(r.result)
    assert data["text/plain"].splitlines()[-1].endswith("truncated at the 1,000-row cap")
    r = shell.run_cell("%kql --limit 5 Events | project EventType")
    assert r.result.height == 5
    assert shell.user_ns["_kql_last"].footer().endswith("truncated at the 5-row cap")


def test_compare_same_and_different(remote_shell, small_events):
    r = remote_shell.run_cell(f"%%kql cmp <<  --compare --local events\n{BY_TYPE}")
    assert r.success, r.error_in_exec
    cmp = remote_shell.user_ns["cmp"]
    assert isinstance(cmp, KqlComparison) and r.result is cmp
    assert cmp.same and cmp.same_order
    assert cmp.summary()[1:] == [
        "local read events where Scope == 'default' (8 of 8 rows) · "
        "remote read emulator, scope 'default'",
        "same rows and columns",
    ]
    remote_shell.user_ns["part"] = small_events.filter(pl.col("DeviceId") == "d1")
    r = remote_shell.run_cell(f"%%kql cmp <<  --compare --local part\n{BY_TYPE}")
    cmp = remote_shell.user_ns["cmp"]
    assert not cmp.same
    assert cmp.only_local.rows() == [("home", 2), ("product", 2)]
    assert cmp.only_remote.rows() == [("home", 3), ("product", 3), ("order", 1)]
    assert "row counts differ: local 3, remote 4" in cmp.summary()
    html = cmp._repr_html_()
    assert "different" in html and "first rows only remote" in html


def test_compare_with_summarized_times(remote_shell):
    r = remote_shell.run_cell(
        "%kql --compare --local events Events | summarize n = count() by bin(EventTime, 1h) | sort by EventTime asc"
    )
    assert r.success, r.error_in_exec
    assert r.result.same, repr(r.result)


def test_remote_render_chart(remote_shell, monkeypatch):
    import psanalytics.jupyter.magic as mod

    shown = []
    monkeypatch.setattr(mod, "display", lambda obj, **kw: shown.append(obj))
    r = remote_shell.run_cell(
        "%kql Events | summarize n = count() by bin(EventTime, 1h) | render timechart"
    )
    assert r.success, r.error_in_exec
    (chart,) = shown
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "line" and spec["encoding"]["x"]["type"] == "temporal"
    assert chart.data["value"].to_list() == [6, 2]


def test_client_selection(remote_shell, small_events):
    remote_shell.user_ns["other"] = make_store(small_events.head(2))
    r = remote_shell.run_cell("%kql Events | count")
    assert "several ProfileStore clients" in str(r.error_in_exec)
    r = remote_shell.run_cell("%kql --client other Events | count")
    assert r.result.rows() == [(2,)]
    r = remote_shell.run_cell("%kql --client events Events | count")
    assert "not a ProfileStore" in str(r.error_in_exec)


def test_typed_remote_leaves_other_text_alone():
    frame = pl.DataFrame({"t": ["2024-03-04T10:00:00.1234567Z", ""], "s": ["2024-03-04", "x"]})
    out = typed_remote(frame)
    assert out.schema["t"] == pl.Datetime("ns", "UTC") and out.schema["s"] == pl.String
    assert out["t"].to_list()[1] is None


def test_kql_console_remote(small_events):
    console = KqlConsole(make_store(small_events))
    console.query.value = BY_TYPE + " | render barchart"
    frame = console.run()
    assert frame.rows() == [("home", 3), ("product", 3), ("basket", 1), ("order", 1)]
    assert "kql remote · 4 rows" in console.footer.value
    assert console.chart is not None
    console.query.value = "Events | take -1"
    assert console.run() is None and console.error


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("PSANALYTICS_URL", raising=False)
    monkeypatch.delenv("PSANALYTICS_API_KEY", raising=False)


def test_remote_resolves_notebook_variables(remote_shell):
    remote_shell.user_ns["kind"] = "basket"
    r = remote_shell.run_cell("%kql Events | where EventType == kind | project DeviceId")
    assert r.success, r.error_in_exec
    assert r.result.rows() == [("d1",)]


def test_remote_error_positions_refer_to_the_written_query(remote_shell):
    r = remote_shell.run_cell("%kql --param t=order Events | where EventTyp == t")
    err = r.error_in_exec
    assert (err.error.line, err.error.column) == (1, 16)
    assert "Events | where EventTyp == t\n               ^^^^^^^^" in str(err)


def test_compare_reads_the_same_scope_on_both_sides(shell, small_events):
    # store.events() returns every scope; the preview reads one: --compare must compare the
    # local frame's rows of that scope (it said DIFFERENT on notebook 02's week)
    from jupyter_helpers import make_store

    other = small_events.head(3).with_columns(
        pl.lit("b2b").alias("Scope"), (pl.col("TrackId") + "-b2b").alias("TrackId")
    )
    both = pl.concat([small_events, other])
    shell.user_ns["store"] = make_store(both)
    shell.user_ns["events"] = both
    r = shell.run_cell(f"%%kql cmp <<  --compare --local events\n{BY_TYPE}")
    assert r.success, r.error_in_exec
    cmp = shell.user_ns["cmp"]
    assert cmp.same, repr(cmp)
    assert cmp.summary()[1] == (
        "local read events where Scope == 'default' (8 of 11 rows; left out: 'b2b') · "
        "remote read emulator, scope 'default'"
    )
    r = shell.run_cell(f"%%kql cmp <<  --compare --local events --scope b2b\n{BY_TYPE}")
    cmp = shell.user_ns["cmp"]
    assert cmp.same and cmp.local.rows() == [("home", 2), ("product", 1)]


TYPED = (
    "Events | summarize span = max(EventTime) - min(EventTime), types = make_set(EventType), "
    "first = min(EventTime), n = count() by DeviceId | sort by DeviceId asc"
)


def test_remote_results_get_the_local_engines_types(remote_shell):
    r = remote_shell.run_cell(f"%kql {TYPED}")
    assert r.success, r.error_in_exec
    assert dict(r.result.schema) == {
        "DeviceId": pl.String,
        "span": pl.Duration("ns"),
        "types": pl.List(pl.String),
        "first": pl.Datetime("ns", "UTC"),
        "n": pl.Int64,
    }
    assert r.result["span"].to_list() == [timedelta(minutes=121), timedelta(minutes=2)]
    assert sorted(r.result["types"][1]) == ["home", "order", "product"]


def test_compare_with_timespans_and_arrays(remote_shell):
    # crashed on the timespan column; arrays came back as JSON text and never matched
    r = remote_shell.run_cell(f"%kql --compare --local events {TYPED}")
    assert r.success, r.error_in_exec
    assert r.result.same, repr(r.result)
    assert r.result.dtype_differences == {}


def test_compare_reports_a_real_array_difference(remote_shell, small_events):
    remote_shell.user_ns["part"] = small_events.filter(pl.col("EventType") != "order")
    r = remote_shell.run_cell(f"%kql --compare --local part {TYPED}")
    cmp = r.result
    assert not cmp.same
    assert cmp.only_local["DeviceId"].to_list() == ["d2"]
    assert cmp.only_remote["DeviceId"].to_list() == ["d2"]


def test_limit_above_the_preview_cap_says_so(remote_shell):
    r = remote_shell.run_cell("%kql --limit 60000 Events | take 5")
    assert r.success, r.error_in_exec
    run = remote_shell.user_ns["_kql_last"]
    assert run.note == (
        "--limit 60,000 is above the preview API's 1,000-row cap "
        "(for every row use store.events(...) and --local)"
    )
    assert run.footer().endswith(run.note)
    r = remote_shell.run_cell("%kql --local --limit 60000 Events | take 5")
    assert remote_shell.user_ns["_kql_last"].note == (
        "--limit 60,000 is above the 1,000-row cap of a %kql run "
        "(raise it with %config KqlMagic.row_cap = 60000)"
    )


def test_capped_render_says_partial(remote_shell, monkeypatch):
    import psanalytics.jupyter.magic as mod

    shown = []
    monkeypatch.setattr(mod, "display", lambda obj, **kw: shown.append(obj))
    remote_shell.run_cell("%config KqlMagic.row_cap = 3")
    r = remote_shell.run_cell(
        "%kql --local Events | summarize n = count() by bin(EventTime, 1m) | render timechart"
    )
    assert r.success, r.error_in_exec
    (chart,) = shown
    assert chart.to_dict()["title"] == "timechart (partial: the result was cut at the 3-row cap)"
    times = chart.data["EventTime"].to_list()
    assert times == sorted(times)
