"""The %kql magic, driven through IPython's own InteractiveShell."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from psanalytics.jupyter.magic import (
    KqlMagic,
    KqlMagicError,
    _split_options,
    compare_frames,
    parse_param,
)


def run(shell, cell: str):
    result = shell.run_cell(cell)
    return result


def magic(shell) -> KqlMagic:
    return next(c for c in shell.configurables if isinstance(c, KqlMagic))


def test_load_ext_prints_nothing():
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\n"
        "r = sh.run_cell('%load_ext psanalytics')\n"
        "assert r.success\n"
        "assert 'kql' in sh.magics_manager.magics['cell']\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""


def test_line_magic_returns_a_real_polars_frame(shell):
    r = run(
        shell,
        "%kql --local Events | summarize n = count() by EventType | sort by n desc, EventType asc",
    )
    assert r.success, r.error_in_exec
    assert type(r.result) is pl.DataFrame
    assert r.result.rows() == [("home", 3), ("product", 3), ("basket", 1), ("order", 1)]
    assert shell.user_ns["_kql"] is r.result


def test_assignment_from_line_magic(shell):
    r = run(
        shell, "df = %kql --local Events | where EventType == 'order' | project DeviceId, EventType"
    )
    assert r.success, r.error_in_exec
    assert shell.user_ns["df"].rows() == [("d2", "order")]


def test_cell_magic_binds_with_double_arrow(shell):
    r = run(
        shell,
        "%%kql top <<  --local events\nEvents\n| summarize n = count() by CountryCode\n| sort by n desc",
    )
    assert r.success, r.error_in_exec
    top = shell.user_ns["top"]
    assert type(top) is pl.DataFrame
    assert top.rows() == [("SE", 5), ("DE", 2), ("", 1)]
    assert r.result is top


def test_local_frame_by_name_and_other_tables(shell, small_events):
    shell.user_ns["orders"] = small_events.filter(pl.col("EventType") == "order")
    r = run(shell, "%kql --local orders Events | count")
    assert r.result.rows() == [(1,)]
    r = run(
        shell, "%kql --local orders | project EventType"
    )  # 'orders' as a table name in the query
    assert r.result.rows() == [("order",)]


def test_footer_in_display_and_cap_truncation(shell):
    run(shell, "%config KqlMagic.row_cap = 3")
    r = run(shell, "%kql --local Events | project EventType")
    assert r.result.height == 3
    data, _ = shell.display_formatter.format(r.result)
    assert data["text/plain"].endswith(
        "kql local on events · 3 rows · "
        + data["text/plain"].split(" · ")[-2]
        + " · truncated at the 3-row cap"
    )
    assert "truncated at the 3-row cap" in data["text/html"]
    run(shell, "%config KqlMagic.row_cap = 1000")
    r = run(shell, "%kql --local --limit 100 Events | project EventType")
    data, _ = shell.display_formatter.format(r.result)
    assert data["text/plain"].splitlines()[-1].endswith("complete")
    assert " 8 rows " in data["text/plain"].splitlines()[-1]


def test_displayed_result_is_a_tidy_table_with_paths_and_one_count(shell):
    run(shell, "%config KqlMagic.display_limit = 2")
    r = run(
        shell, "%kql --local Events | where PageUri != '' | project PageUri, EventType | take 3"
    )
    html = shell.display_formatter.format(r.result)[0]["text/html"]
    assert "shape:" not in html and "table class='psa-table'" in html
    pages = re.findall(r"<td title='(https://example.com/[^']*)'>([^<]*)</td>", html)
    assert pages == [("https://example.com/", "/"), ("https://example.com/p1", "/p1")]
    footer = re.search(r"<div style='[^']*'>([^<]*)</div>$", html).group(1)
    assert footer.startswith("first 2 shown · kql local on events · 3 rows · ")
    assert footer.count(" rows") == 1
    run(shell, "%config KqlMagic.display_limit = 10")


def test_plain_frames_keep_their_normal_display(shell):
    other = pl.DataFrame({"a": [1]})
    data, _ = shell.display_formatter.format(other)
    assert data["text/plain"] == repr(other)
    assert data["text/html"] == other._repr_html_()


def test_trailing_semicolon_suppresses_display_but_binds(shell):
    r = run(shell, "%%kql quiet <<  --local\nEvents | count;")
    assert r.success, r.error_in_exec
    assert r.result is None
    assert shell.user_ns["quiet"].rows() == [(8,)]
    r = run(shell, "%kql --local Events | count;")
    assert r.result is None and shell.user_ns["_kql"].rows() == [(8,)]
    r = run(shell, "x = %kql --local Events | count;")
    assert shell.user_ns["x"].rows() == [(8,)]


def test_params_are_typed_lets(shell):
    r = run(
        shell,
        "%kql --local --param t=order --param n=1 Events | where EventType == t | take n | project EventType",
    )
    assert r.result.rows() == [("order",)]
    shell.user_ns["since"] = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
    r = run(shell, "%kql --local --param since Events | where EventTime >= since | count")
    assert r.result.rows() == [(2,)]
    r = run(
        shell,
        '%kql --local --param "kinds=[\\"home\\", \\"order\\"]" Events | where EventType in (kinds) | count',
    )
    assert r.success, r.error_in_exec
    assert r.result.rows() == [(4,)]
    # a value is never spliced into the text: a quote in it stays data
    r = run(
        shell,
        "%kql --local --param \"t=x' or EventType != 'y\" Events | where EventType == t | count",
    )
    assert r.result.rows() == [(0,)]


def test_parse_param_types():
    assert parse_param("a=1") == ("a", 1)
    assert parse_param("a=-1.5") == ("a", -1.5)
    assert parse_param("a=true") == ("a", True)
    assert parse_param("a=30m") == ("a", timedelta(minutes=30))
    assert parse_param("a=7d") == ("a", timedelta(days=7))
    assert parse_param("a=2024-03-04T10:00:00Z") == ("a", datetime(2024, 3, 4, 10, tzinfo=UTC))
    assert parse_param("a=2024-03-04") == ("a", datetime(2024, 3, 4, tzinfo=UTC))
    assert parse_param('a=["x", 2]') == ("a", ["x", 2])
    assert parse_param("a='42'") == ("a", "42")
    assert parse_param("a=order") == ("a", "order")
    assert parse_param("a", {"a": 3}) == ("a", 3)
    with pytest.raises(KqlMagicError, match="no variable 'b'"):
        parse_param("b", {})
    with pytest.raises(KqlMagicError, match="not a valid KQL name"):
        parse_param("1x=2")


def test_split_options_keeps_query_verbatim():
    assert _split_options("--local Events | take 1") == ("--local", "Events | take 1")
    assert _split_options("--local ev Events | take 1") == ("--local ev", "Events | take 1")
    assert _split_options("--local=ev --limit 5 Events") == ("--local=ev --limit 5", "Events")
    assert _split_options("--param \"t=a b\" Events | where x == 'a  b'") == (
        '--param "t=a b"',
        "Events | where x == 'a  b'",
    )
    assert _split_options("--compare") == ("--compare", "")


def test_kql_error_shows_caret_not_traceback(shell, capsys):
    r = run(shell, "%kql --local Events | wher EventType == 'x'")
    assert not r.success
    err = r.error_in_exec
    assert isinstance(err, KqlMagicError)
    assert type(err.error).__name__ == "KqlSyntaxError"
    assert err.error.line == 1 and err.error.column == 10
    shown = "\n".join(err._render_traceback_())
    assert "Traceback" not in shown
    assert "Events | wher EventType == 'x'\n         ^^^^" in shown
    assert "did you mean 'where'" in shown
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "^^^^" in captured.out + captured.err


def test_errors_can_be_displayed_without_raising(shell, capsys):
    run(shell, "%config KqlMagic.raise_errors = False")
    r = run(shell, "%%kql --local\nEvents\n| where CountryCod == 'SE'")
    assert r.success and r.result is None
    out = capsys.readouterr().out
    assert "KqlSemanticError" in out and "| where CountryCod == 'SE'\n        ^^^^^^^^^^" in out


def test_usage_errors(shell):
    r = run(shell, "%kql --local nothere")
    assert isinstance(r.error_in_exec, KqlMagicError)
    assert "no query" in str(r.error_in_exec)
    r = run(shell, "%kql --local=missing Events | count")
    assert "no frame named 'missing'" in str(r.error_in_exec)
    r = run(shell, "%%kql --local extra words\nEvents")
    assert "unexpected text after the options" in str(r.error_in_exec)
    r = run(shell, "%kql --limit x Events")
    assert "bad options" in str(r.error_in_exec)


def test_out_pandas(shell):
    r = run(shell, "%kql --local --out pandas Events | summarize n = count()")
    import pandas as pd

    assert isinstance(r.result, pd.DataFrame)
    assert r.result["n"].tolist() == [8]
    data, _ = shell.display_formatter.format(r.result)
    assert "kql local on events · 1 row " in data["text/html"]


def test_config_via_percent_config_and_pyproject(shell, tmp_path, monkeypatch):
    run(shell, "%config KqlMagic.engine = 'local'")
    assert magic(shell).engine == "local"
    r = run(shell, "%kql Events | count")  # no --local needed now
    assert r.result.rows() == [(8,)]
    r = run(shell, "%config KqlMagic.out = 'arrow'")
    assert magic(shell).out == "polars"  # rejected by the trait's Enum
    # defaults from [tool.psanalytics.magic]
    from IPython.core.interactiveshell import InteractiveShell

    (tmp_path / "pyproject.toml").write_text(
        "[tool.psanalytics.magic]\ndisplay_limit = 3\nengine = 'local'\n"
    )
    monkeypatch.chdir(tmp_path)
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance()
    sh.run_cell("%load_ext psanalytics")
    m = magic(sh)
    assert (m.display_limit, m.engine) == (3, "local")


def test_render_draws_an_altair_chart(shell, monkeypatch):
    shown = []
    import psanalytics.jupyter.magic as mod

    monkeypatch.setattr(mod, "display", lambda obj, **kw: shown.append(obj))
    r = run(shell, "%kql --local Events | summarize n = count() by EventType | render barchart")
    assert r.success, r.error_in_exec
    assert sorted(r.result["EventType"].to_list()) == ["basket", "home", "order", "product"]
    (chart,) = shown
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar"
    assert sorted(chart.data["EventType"].to_list()) == ["basket", "home", "order", "product"]
    shown.clear()
    run(shell, "%kql --local Events | summarize n = count() by EventType | render piechart;")
    assert shown == []


def test_explain_prints_the_plan(shell, capsys):
    r = run(shell, "%kql --local --explain Events | where EventType == 'order' | project DeviceId")
    assert r.success and r.result is None
    out = capsys.readouterr().out
    assert "FILTER" in out.upper() or "SELECT" in out.upper()


def test_compare_frames_reports_differences():
    a = pl.DataFrame({"k": ["x", "y", "y"], "n": [1, 2, 2]})
    b = pl.DataFrame({"k": ["y", "x", "z"], "n": [2.0, 1.0, 3.0]})
    c = compare_frames(a, b)
    assert not c.same
    assert c.only_local.rows() == [("y", 2)]
    assert c.only_remote.rows() == [("z", 3.0)]
    assert "1 rows only local, 1 rows only remote" in c.summary()
    same = compare_frames(a, a.reverse())
    assert same.same and not same.same_order
    cols = compare_frames(a, a.with_columns(pl.lit(1).alias("extra")))
    assert cols.columns_only_remote == ["extra"] and not cols.same


def test_notebook_variables_resolve_as_typed_lets(shell):
    shell.user_ns["kind"] = "order"
    shell.user_ns["since"] = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
    r = run(
        shell,
        "%kql --local Events | where EventType == kind or EventTime >= since | project EventType",
    )
    assert r.success, r.error_in_exec
    assert sorted(r.result["EventType"].to_list()) == ["home", "order", "product"]
    # a frame of the notebook is a table, not a value
    r = run(shell, "%kql --local Events | where EventType == events")
    assert "'events' is a table, not a value" in str(r.error_in_exec)
    r = run(shell, "%kql --local Events | where EventType == nothere")
    assert "unknown column or name 'nothere'" in str(r.error_in_exec)


def test_python_api_kql_error_shows_the_message_not_the_traceback(shell, capsys):
    # ps.kql(...) with a typo printed ~40 lines of parser frames above the good message
    r = shell.run_cell(
        "import psanalytics as ps\nx = 1\nps.kql('Events\\n| wher EventType == 1', events)"
    )
    assert r.error_in_exec is not None
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0] == "in cell line 3"
    assert "Traceback" not in out and "File " not in out and ".py" not in out
    assert str(r.error_in_exec).splitlines()[0] in out
    assert lines[-1] == "(the full traceback: %tb)"
    assert len(lines) <= 3 + len(str(r.error_in_exec).splitlines())
