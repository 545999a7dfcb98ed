"""export() keeps what it does not own, survives damaged parts, odd paths and an overfull
instant, and two exports never write one folder at once (issue 19, items 3, 6, 7, 10)."""

from __future__ import annotations

import os
import threading

import orjson
import polars as pl
import pytest
from api_fakes import KEY as API_KEY
from api_fakes import FakeStore, make_events

import psanalytics as ps
from psanalytics.api import export as export_mod
from psanalytics.api.export import ExportError, read_checkpoint
from psanalytics.api.http import RetryPolicy
from psanalytics.api.profile_store import ProfileStore
from psanalytics.api.windows import WindowOverflowError, to_ns
from psanalytics.emulator import Emulator

KEY = "export-safety-key"
FAST = RetryPolicy(max_attempts=6, backoff_initial=0.001, backoff_max=0.002, max_retry_after=1)
T0 = to_ns("2024-03-01T00:00:00Z")


def store_for(fake: FakeStore, **kw) -> ProfileStore:
    kw.setdefault("policy", FAST)
    kw.setdefault("progress", False)
    return ProfileStore("http://ps.test", API_KEY, transport=fake.transport(), **kw)


def events(n: int = 25_000) -> pl.DataFrame:
    return make_events([T0 + (i // 3) * 700_000_000 for i in range(n)],
                       ["order" if i % 4 == 0 else "home" for i in range(n)])


class Stop(Exception):
    pass


def stop_after(k):
    def f(n):
        if n == k:
            raise Stop
    return f


def user_folder(tmp_path):
    root = tmp_path / "userdata"
    (root / "2023-01-01").mkdir(parents=True)
    for n in ("part-00000-9f1c.snappy.parquet", "part-00001-9f1c.snappy.parquet", "notes.txt"):
        (root / "2023-01-01" / n).write_text("user data")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "part-keep.parquet").write_text("precious")
    (outside / "x.parquet.tmp1").write_text("precious too")
    os.symlink(outside, root / "2023-02-02")
    return root, outside


def test_a_folder_with_someone_elses_files_is_refused_and_nothing_is_deleted(tmp_path):
    root, outside = user_folder(tmp_path)
    s = store_for(FakeStore(events(3000)))
    with pytest.raises(ExportError) as info:
        s.export(root)
    assert str(info.value) == (f"{root} is not empty and holds no psanalytics export ({root}/_checkpoint.json): "
                               "refusing to write into it; choose an empty folder, or pass overwrite=True "
                               "to write alongside (nothing that is not ours is ever deleted)")
    assert sorted(os.listdir(root / "2023-01-01")) == ["notes.txt", "part-00000-9f1c.snappy.parquet",
                                                       "part-00001-9f1c.snappy.parquet"]
    # told to: writes alongside, and a re-run with other arguments deletes only our own parts
    rep = s.export(root, overwrite=True)
    assert rep.rows == 3000
    ours = {str(p.relative_to(root)) for p in rep.files}
    rep2 = s.export(root, "EventType eq order")
    assert rep2.rows == 750
    left = {str(p.relative_to(root)) for p in root.rglob("part-*") if "2023-" not in str(p)}
    assert left == {str(p.relative_to(root)) for p in rep2.files} and not ours & left - left
    assert sorted(os.listdir(root / "2023-01-01")) == ["notes.txt", "part-00000-9f1c.snappy.parquet",
                                                       "part-00001-9f1c.snappy.parquet"]
    assert sorted(os.listdir(outside)) == ["part-keep.parquet", "x.parquet.tmp1"]


def test_a_checkpoint_never_makes_us_delete_through_a_symlink_or_outside_the_root(tmp_path):
    root, outside = user_folder(tmp_path)
    s = store_for(FakeStore(events(3000)))
    s.export(root, overwrite=True)
    ck = read_checkpoint(root)
    # a checkpoint edited (or crafted) to name files through the link and outside the root
    ck["done"]["x"] = {"file": "2023-02-02/part-keep.parquet", "rows": 1}
    ck["done"]["y"] = {"file": "../elsewhere/part-keep.parquet", "rows": 1}
    (root / "_checkpoint.json").write_bytes(orjson.dumps(ck))
    s.export(root, "EventType eq home")
    assert sorted(os.listdir(outside)) == ["part-keep.parquet", "x.parquet.tmp1"]


def test_an_export_folder_named_with_a_bracket_completes_and_resumes(tmp_path):
    df = events(25_000)
    s = store_for(FakeStore(df), concurrency=1)
    d = tmp_path / "export [2024]"
    with pytest.raises(Stop):
        s.export(d, _after_window=stop_after(2))
    rep = s.export(d)
    assert rep.resumed_windows == 2 and rep.rows == 25_000
    assert rep.read().sort(["EventTime", "TrackId"]).equals(df)
    assert ps.read_events(d).height == 25_000


def test_a_damaged_finished_part_is_fetched_again_on_resume(tmp_path):
    df = events(25_000)
    fake = FakeStore(df)
    s = store_for(fake, concurrency=1)
    d = tmp_path / "exp"
    with pytest.raises(Stop):
        s.export(d, _after_window=stop_after(3))
    ck = read_checkpoint(d)
    first, second, third = (d / v["file"] for v in ck["done"].values())
    with open(first, "r+b") as fh:
        fh.truncate(100)          # cut short
    second.write_bytes(b"")       # emptied
    with pytest.warns(UserWarning, match="2 finished part files were damaged"):
        rep = s.export(d)
    assert rep.resumed_windows == 1
    assert sorted(rep.repaired) == sorted([str(first.relative_to(d)), str(second.relative_to(d))])
    assert rep.rows == 25_000 and rep.read().sort(["EventTime", "TrackId"]).equals(df)
    assert third.exists()


def test_finished_parts_and_their_folder_are_fsynced_before_the_checkpoint(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    d = tmp_path / "exp"
    rep = store_for(FakeStore(events(25_000)), concurrency=1).export(d)
    for f in rep.files:
        part = [i for i, p in enumerate(synced) if p.startswith(str(f) + ".tmp")]
        folder = [i for i, p in enumerate(synced) if p == str(f.parent)]
        assert part and folder and part[0] < folder[-1], (f, synced)
    assert any(p.startswith(str(d / "_checkpoint.json")) for p in synced)


def test_an_overfull_instant_does_not_stop_the_rest_of_the_export(tmp_path):
    base = events(6000)
    same = make_events([T0 + 3_600 * 10**9] * 12_000, ["burst"] * 12_000)
    same = same.with_columns(pl.format("s{}", pl.int_range(pl.len())).alias("TrackId"))
    df = pl.concat([base, same]).sort(["EventTime", "TrackId"])
    s = store_for(FakeStore(df), concurrency=2)
    d = tmp_path / "exp"
    with pytest.raises(WindowOverflowError) as info:
        s.export(d)
    msg = str(info.value)
    assert msg.startswith("12,000 matching events share the single instant EventTime = 2024-03-01T01:00:00.0000000Z")
    assert "every other window was exported" in msg and "6,000 events" in msg
    rep = info.value.report
    assert rep.rows == 6000 and rep.read().sort(["EventTime", "TrackId"]).equals(base.sort(["EventTime", "TrackId"]))
    ck = read_checkpoint(d)
    assert not ck["complete"] and ck["overflow"] == [{"instant": "2024-03-01T01:00:00.0000000Z", "count": 12_000}]
    # a resume fetches nothing again and says the same
    with pytest.raises(WindowOverflowError) as again:
        s.export(d)
    assert again.value.report.resumed_windows == len(again.value.report.windows)
    assert again.value.report.fetched_rows == 0


def test_two_exports_into_one_folder_the_second_is_refused(tmp_path):
    d = tmp_path / "exp"
    s = store_for(FakeStore(events(25_000)), concurrency=1)
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow(n):
        if n == 1:
            entered.set()
            assert release.wait(60)

    def first():
        try:
            s.export(d, _after_window=slow)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(60)
    try:
        with pytest.raises(ExportError, match=r"another export is writing into .*exp \(pid \d+"):
            store_for(FakeStore(events(25_000))).export(d)
    finally:
        release.set()
        t.join(60)
    assert not errors
    assert store_for(FakeStore(events(25_000))).export(d).rows == 25_000  # the lock was released


def test_events_without_event_time_in_the_store_are_a_clear_error(tmp_path):
    df = events(300)
    nt = df.head(3).with_columns(pl.lit(None, dtype=df.schema["EventTime"]).alias("EventTime"),
                                 (pl.col("TrackId") + "-x").alias("TrackId"))
    emu = Emulator(pl.concat([df, nt]), api_key="k")
    st = ps.connect("http://e", "k", transport=emu.transport(), progress=False)
    for f in (lambda: st.events(), lambda: st.export(tmp_path / "x")):
        with pytest.raises(ps.errors.PsaError) as info:
            f()
        assert "without EventTime" in str(info.value) and "-x" in str(info.value)


def test_export_module_has_a_lock_file_name():
    assert export_mod.LOCK == "_export.lock"


def test_cli_output_paths_are_checked_before_any_request(tmp_path):
    from typer.testing import CliRunner

    from psanalytics.cli import app

    folder = tmp_path / "X.parquet"
    folder.mkdir()
    dead = ["--url", "http://127.0.0.1:9", "--api-key", "k-unused-123", "--no-progress"]
    r = CliRunner().invoke(app, ["fetch", str(folder), *dead])
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    assert f"error: {folder} is a folder; give a file name" in r.output and "Traceback" not in r.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(app, ["preview", "Events | take 1", "-o", str(blocker / "dir" / "x.csv"),
                                 "--url", "http://127.0.0.1:9", "--api-key", "k-unused-123"])
    assert r.exit_code == 1 and f"error: cannot create the folder {blocker / 'dir'}" in r.output
    # a missing folder is created; the in-process emulator answers
    out = tmp_path / "missing" / "dir" / "x.csv"
    r = CliRunner().invoke(app, ["preview", "Events | take 3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert pl.read_csv(out).height == 3


def test_a_checkpoint_in_the_earlier_one_object_format_resumes_and_continues_as_json_lines(tmp_path):
    df = events(25_000)
    fake = FakeStore(df)
    s = store_for(fake, concurrency=1)
    d = tmp_path / "exp"
    with pytest.raises(Stop):
        s.export(d, _after_window=stop_after(2))
    state = read_checkpoint(d)
    # what versions before the shared checkpoint format wrote: one indented JSON object
    old = {"version": 1, "args": state["args"], "windows": state["windows"],
           "done": state["done"], "complete": False}
    (d / "_checkpoint.json").write_bytes(orjson.dumps(old, option=orjson.OPT_INDENT_2))
    assert read_checkpoint(d) == old
    gets = len(fake.gets())
    rep = s.export(d)
    assert rep.resumed_windows == 2 and rep.rows == 25_000
    assert len(fake.gets()) - gets == len(state["windows"]) - 2  # one page per window left
    lines = [orjson.loads(line) for line in (d / "_checkpoint.json").read_bytes().splitlines()]
    assert lines[0]["checkpoint"] == 1 and lines[0]["args"] == old["args"] and "done" not in lines[0]
    assert [ln["done"] for ln in lines[1:-1]] == [w["key"] for w in old["windows"]]
    assert lines[-1] == {"complete": True}


def test_a_torn_last_checkpoint_line_is_skipped_and_the_window_fetched_again(tmp_path):
    df = events(25_000)
    s = store_for(FakeStore(df), concurrency=1)
    d = tmp_path / "exp"
    with pytest.raises(Stop):
        s.export(d, _after_window=stop_after(3))
    ck = d / "_checkpoint.json"
    ck.write_bytes(ck.read_bytes()[:-20])  # killed mid-append: the third line is torn
    assert len(read_checkpoint(d)["done"]) == 2
    rep = s.export(d)
    assert rep.resumed_windows == 2 and rep.read().sort(["EventTime", "TrackId"]).equals(df)
