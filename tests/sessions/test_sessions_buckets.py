"""The bounded-memory path: hash buckets streamed to files give exactly the in-memory result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from sessions_streams import ev, frame
from typer.testing import CliRunner

from psanalytics import samples, schema, sessionize, stitch
from psanalytics.cli import app
from psanalytics.sessions import SessionizeError, device_buckets

H = 3600


@pytest.fixture(scope="module")
def edgy():
    """Generated traffic (bots past the 24 h cap, shared devices with several e-mails), times
    cut to the minute so equal times (ties decided by input order) are everywhere, plus
    hand-made devices for the midnight, campaign, identity and exact-timeout rules."""
    g = samples.generate(4_000, n_devices=300, days=3, seed=11)
    g = g.with_columns(pl.col("EventTime").dt.truncate("1m"))
    hand = frame(
        [
            ev("mid", 22 * H + 50 * 60),  # 23:50 Stockholm (UTC+1) ...
            ev("mid", 23 * H + 10 * 60),  # ... 00:10 next day: a midnight split
            ev("camp", 0, page="https://x/?utm_source=a"),
            ev("camp", 60, page="https://x/?utm_source=b"),
            ev("id", 0, email="Ann@x.se"),
            ev("id", 60, email="bo@x.se"),
            ev("tie", 100, page="https://x/1"),
            ev("tie", 100, page="https://x/2"),  # same time: input order decides
            ev("pay", 0, payload='{"utm_source": "news", "referrer": "https://Mail.ex/a"}'),
            ev("gap", 0),
            ev("gap", 1800),  # exactly 30 min: same session
            ev("gap", 3601),
            *[ev("bot", i * 1200) for i in range(90)],  # 30 h, never idle: the 24 h cap
        ]
    )
    return pl.concat([g, hand.select(g.columns)])


RULES = [
    {},
    {"columns": "minimal"},
    {
        "split_at_midnight": "Europe/Stockholm",
        "split_on_campaign": True,
        "split_on_identity_change": True,
        "max_duration": "2h",
        "timeout": "profile_store_visits",
    },
]


@pytest.mark.parametrize("rules", RULES, ids=["defaults", "minimal", "every-rule"])
def test_buckets_give_the_in_memory_result(edgy, tmp_path, rules):
    mem = sessionize(edgy, **rules)
    res = sessionize(
        edgy.lazy(),
        out=tmp_path / "s.parquet",
        events_out=tmp_path / "e.parquet",
        memory="1MB",
        progress=False,
        **rules,
    )
    # the budget really split the devices (minimal's spill holds 3 narrow columns)
    assert res.n_buckets > (1 if rules.get("columns") == "minimal" else 3)
    assert (res.n_events, res.n_sessions) == (mem.events.height, mem.sessions.height)
    assert res.n_devices == edgy["DeviceId"].n_unique()
    s = pl.read_parquet(tmp_path / "s.parquet")
    e = pl.read_parquet(tmp_path / "e.parquet")
    assert s.schema == mem.sessions.schema
    assert s.equals(mem.sessions)
    assert e.equals(mem.events)
    assert res.sessions.collect().equals(mem.sessions)
    if not rules:  # the data really has the edge cases
        assert set(s["split_reason"]) == {"first", "inactivity", "max_duration"}
        assert (s["n_user_emails"] > 1).any()
        # UTM keys in Payload (the spill keeps Payload only where it can hold them)
        pay = s.filter(pl.col("device_id") == "pay")
        assert pay.select("entry_utm_source", "entry_referrer_host").row(0) == ("news", "mail.ex")


def test_files_in_csv_out_and_a_column_choice(edgy, tmp_path):
    src = tmp_path / "in.parquet"
    edgy.write_parquet(src)
    mem = sessionize(edgy, columns=["session_id", "start_time", "n_pageviews", "event_counts"])
    assert mem.sessions.columns == ["session_id", "start_time", "n_pageviews", "event_counts"]
    res = sessionize(
        str(src),
        out=tmp_path / "s.csv",
        columns=["session_id", "start_time", "n_pageviews", "event_counts"],
        memory="1MB",
        progress=False,
    )
    assert res.events_path is None and res.n_buckets > 3
    back = pl.read_csv(tmp_path / "s.csv", try_parse_dates=True)
    assert back["session_id"].to_list() == mem.sessions["session_id"].to_list()
    assert back["n_pageviews"].to_list() == mem.sessions["n_pageviews"].to_list()
    expect = mem.sessions.select(pl.col("event_counts").struct.json_encode())["event_counts"]
    assert back["event_counts"].to_list() == expect.to_list()


def test_small_input_is_written_directly(tmp_path):
    f = frame([ev("a", 0), ev("a", 60), ev("a", 2 * H), ev("b", 10)])
    res = sessionize(f, out=tmp_path / "s.parquet", events_out=tmp_path / "e.parquet")
    assert (res.n_events, res.n_sessions, res.n_devices, res.n_buckets) == (4, 3, 2, 1)
    assert pl.read_parquet(tmp_path / "s.parquet").equals(sessionize(f).sessions)
    assert pl.read_parquet(tmp_path / "e.parquet").equals(sessionize(f).events)


def test_cli_streams_through_buckets(edgy, tmp_path):
    src = tmp_path / "in.ndjson"
    src.write_text("\n".join(schema.api_json_lines(edgy).to_list()) + "\n")
    out, evs = tmp_path / "s.parquet", tmp_path / "e.parquet"
    r = CliRunner().invoke(
        app,
        ["sessionize", str(src), "--out", str(out), "--events-out", str(evs), "--memory", "1MB"],
    )
    assert r.exit_code == 0, r.output
    mem = sessionize(edgy)
    devices = edgy["DeviceId"].n_unique()
    assert (
        f"{edgy.height:,} events -> {mem.sessions.height:,} sessions ({devices:,} devices)"
        in r.output
    )
    assert pl.read_parquet(out).equals(mem.sessions)
    assert pl.read_parquet(evs).drop(mem.events.columns).columns == []


def test_cli_names_the_bad_line_of_a_lazily_scanned_file(tmp_path):
    src = tmp_path / "in.ndjson"
    good = schema.api_json_lines(frame([ev("a", 0), ev("a", 60)])).to_list()
    src.write_text(good[0] + "\n" + good[1] + "\n{not json\n")
    r = CliRunner().invoke(app, ["sessionize", str(src), "--out", str(tmp_path / "s.parquet")])
    assert r.exit_code == 2
    assert f"{src}:3" in r.output
    assert not (tmp_path / "s.parquet").exists()


def test_bad_memory_budget_is_a_clear_error(tmp_path):
    f = frame([ev("a", 0)])
    with pytest.raises(SessionizeError, match=r"memory='lots' is not a size: use e.g. '4GB'"):
        sessionize(f, out=tmp_path / "s.parquet", memory="lots")
    with pytest.raises(SessionizeError, match=r"memory='10kb' is too small: give at least 1MB"):
        sessionize(f, out=tmp_path / "s.parquet", memory="10kb")
    with pytest.raises(SessionizeError, match=r"s.txt: write .parquet or .csv \(got '.txt'\)"):
        sessionize(f, out=tmp_path / "s.txt")
    with pytest.raises(SessionizeError, match="columns: no sessions-table column 'nope'"):
        sessionize(f, columns=["session_id", "nope"])


def test_device_buckets_hold_whole_devices_in_input_order(edgy):
    seen = []
    with device_buckets(edgy.lazy(), memory="1MB", progress=False) as buckets:
        for b in buckets:
            assert b["__psa_row"].is_sorted()
            seen.append(b)
    assert len(seen) > 3
    devs = [set(b["DeviceId"]) for b in seen]
    assert sum(len(d) for d in devs) == len(set().union(*devs))  # no device in two buckets
    allrows = pl.concat(seen).sort("__psa_row")
    assert allrows["__psa_row"].to_list() == list(range(edgy.height))
    assert allrows.drop("__psa_row").equals(edgy)


def test_the_input_is_streamed_with_bounded_read_ahead(edgy, monkeypatch):
    """Polars' read-ahead settings are set while the input is streamed (every batch sees
    them), a value the caller set is kept, and ours are gone afterwards."""
    monkeypatch.delenv("POLARS_MAX_CONCURRENT_SCANS", raising=False)
    monkeypatch.setenv("POLARS_ROW_GROUP_PREFETCH_SIZE", "7")
    seen = set()

    def spy(df: pl.DataFrame) -> pl.DataFrame:
        env = os.environ
        seen.add(
            (env.get("POLARS_MAX_CONCURRENT_SCANS"), env.get("POLARS_ROW_GROUP_PREFETCH_SIZE"))
        )
        return df

    lf = edgy.lazy().map_batches(spy, streamable=True)
    with device_buckets(lf, memory="1MB", progress=False) as buckets:
        rows = sum(b.height for b in buckets)
    assert rows == edgy.height
    assert seen == {("1", "7")}
    assert "POLARS_MAX_CONCURRENT_SCANS" not in os.environ
    assert os.environ["POLARS_ROW_GROUP_PREFETCH_SIZE"] == "7"


def test_stitch_streams_a_lazy_frame(edgy):
    a = stitch(edgy)
    assert a.height > 0 and a["is_shared"].any()
    assert stitch(edgy.lazy()).equals(a)


_BLOCKED_RUN = """
import signal, sys
from psanalytics import samples, sessionize
from psanalytics.sessions import _buckets

def blocked(*args, **kwargs):  # the first bucket: the spill is written; wait for a signal
    open(sys.argv[1], "w").close()
    signal.pause()
    raise SystemExit("no signal came")

_buckets.sessionize_rules = blocked
events = samples.generate(3_000, n_devices=200, seed=3)
sessionize(events.lazy(), out=sys.argv[2], memory="1MB", progress=False)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_killed_bucketed_run_removes_its_spill(tmp_path, sig):
    spill = tmp_path / "tmp"
    spill.mkdir()
    ready, out = tmp_path / "ready", tmp_path / "s.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED_RUN, str(ready), str(out)],
        env={**os.environ, "TMPDIR": str(spill)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no bucket began"
        (run,) = spill.iterdir()
        assert run.name.startswith("psa-buckets-") and any(run.iterdir())
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the test fails
            proc.kill()
    assert proc.returncode == -sig  # the process still ends by that signal
    assert list(spill.iterdir()) == []
    assert not out.exists() and not out.with_name("s.parquet.partial").exists()


def test_buckets_with_a_two_column_key_give_the_in_memory_result(edgy, tmp_path):
    """With a two-column key ``session_id`` is not rebuilt from the input's key: it is the
    first event's key text, which a null ``Scope`` (grouped with "") makes null; the bounded
    path keeps it as the kernel wrote it."""
    scope = pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.lit(""))
    f = edgy.with_columns(Scope=scope)
    mem = sessionize(f, key=["DeviceId", "Scope"])
    assert mem.events["session_id"].null_count() > 0  # the case really is there
    res = sessionize(
        f.lazy(),
        key=["DeviceId", "Scope"],
        out=tmp_path / "s.parquet",
        events_out=tmp_path / "e.parquet",
        memory="1MB",
        progress=False,
    )
    assert res.n_buckets > 3
    assert pl.read_parquet(tmp_path / "s.parquet").equals(mem.sessions)
    assert pl.read_parquet(tmp_path / "e.parquet").equals(mem.events)
    # rebuilding it per event from the key would have given another column
    rebuilt = mem.events.select(
        pl.concat_str(
            [
                pl.concat_str(["DeviceId", "Scope"], separator="|"),
                pl.lit(":"),
                pl.col("session_index").cast(pl.String),
            ]  # fmt: skip
        )
    ).to_series()
    assert not rebuilt.equals(mem.events["session_id"])


def test_events_csv_out_of_buckets(edgy, tmp_path):
    """The events file streamed as CSV: the input's struct column as JSON text, the
    session columns next to it, rows in input order."""
    mem = sessionize(edgy)
    res = sessionize(edgy.lazy(), events_out=tmp_path / "e.csv", memory="1MB", progress=False)
    assert res.n_buckets > 3 and res.sessions_path is None
    back = pl.read_csv(tmp_path / "e.csv", infer_schema=False)
    assert back.columns == mem.events.columns
    assert back["session_id"].to_list() == mem.events["session_id"].to_list()
    assert back["session_key"].cast(pl.UInt32).to_list() == mem.events["session_key"].to_list()
    expect = mem.events.select(pl.col("User").struct.json_encode())["User"]
    assert back["User"].to_list() == expect.to_list()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("change", [-7, 5], ids=["lost-rows", "gained-rows"])
def test_input_changed_between_reads_is_refused_and_writes_nothing(edgy, tmp_path, monkeypatch,
                                                                  change):
    """The events file reads the input a second time: an export folder whose part lost or
    gained rows since the first read must not come out with the session columns next to
    the wrong rows (or padded with nulls): a clear error, and no events file, not even a
    partial one."""
    import psanalytics.sessions._buckets as buckets

    src = tmp_path / "export"
    src.mkdir()
    half = edgy.height // 2
    edgy.head(half).write_parquet(src / "part-0.parquet")
    edgy.slice(half).write_parquet(src / "part-1.parquet")
    original = buckets._write_events

    def rewritten_then_write(*args, **kwargs):
        rest = edgy.slice(half)
        changed = rest.head(rest.height + change) if change < 0 else pl.concat(
            [rest, rest.head(change)])
        tmp = src / "part-1.parquet.tmp"
        changed.write_parquet(tmp)
        os.replace(tmp, src / "part-1.parquet")  # a new file under the same name
        return original(*args, **kwargs)

    monkeypatch.setattr(buckets, "_write_events", rewritten_then_write)
    with pytest.raises(SessionizeError, match="the input changed while it was being sessionized"):
        sessionize(str(src), out=tmp_path / "s.parquet", events_out=tmp_path / "e.parquet",
                   memory="1MB", progress=False)
    assert not (tmp_path / "e.parquet").exists()
    assert not (tmp_path / "e.parquet.partial").exists()
