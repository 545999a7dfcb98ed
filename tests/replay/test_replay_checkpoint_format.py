"""The replay checkpoint is the one shared checkpoint (``psanalytics/_checkpoint.py``):
files written by earlier versions load, a torn last line is skipped and appended past,
and every record is fsynced before ``record`` returns."""

from __future__ import annotations

import os

import orjson

from psanalytics._checkpoint import CheckpointFile, read_lines
from psanalytics.replay.batching import Batch
from psanalytics.replay.checkpoint import Checkpoint

# Written by the replay before the format was shared (header, two batches, a torn line).
OLD = (b'{"checkpoint":1,"sink":"event-api http://x/v1/events","account_id":"1","events":"in.ndjson"}\n'
       b'{"batch":"0-aa","status":"ok","events":100,"offsets":[0,99],"at":"2026-12-01T10:00:00.000+00:00"}\n'
       b'{"batch":"1-bb","status":"rejected","events":3,"offsets":[100,102],"at":"2026-12-01T10:00:01.000+00:00"}\n'
       b'{"batch":"2-cc","stat')


def _batch(seq: int, bid: str) -> Batch:
    return Batch(seq=seq, id=bid, body=b"{}", visitors=1, events=5, first_ms=0, last_ms=0,
                 offset_min=10 * seq, offset_max=10 * seq + 4)


def test_an_earlier_replay_checkpoint_loads_and_a_resume_appends_past_its_torn_line(tmp_path):
    path = tmp_path / "replay.ckpt"
    path.write_bytes(OLD)
    ck = Checkpoint(path)
    assert ck.done == {"0-aa": "ok", "1-bb": "rejected"}
    assert ck.header == {"checkpoint": 1, "sink": "event-api http://x/v1/events", "account_id": "1",
                         "events": "in.ndjson"}
    ck.open({"sink": "event-api http://x/v1/events", "account_id": "1", "events": "in.ndjson"})
    ck.record(_batch(2, "2-cc"), "ok")
    ck.close()
    assert Checkpoint(path).done == {"0-aa": "ok", "1-bb": "rejected", "2-cc": "ok"}
    assert path.read_bytes().startswith(OLD + b"\n")  # nothing earlier was rewritten


def test_every_record_is_fsynced_before_record_returns(tmp_path, monkeypatch):
    path = tmp_path / "replay.ckpt"
    synced: list[int] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.fstat(fd).st_size)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ck = Checkpoint(path)
    ck.open({"sink": "s", "account_id": "1"})
    for i in range(3):
        ck.record(_batch(i, f"{i}-x"), "ok")
        assert synced[-1] == path.stat().st_size  # the whole file so far is on disk
    ck.close()
    header, records = read_lines(path)
    assert header == {"checkpoint": 1, "sink": "s", "account_id": "1"}
    assert [r["batch"] for r in records] == ["0-x", "1-x", "2-x"]


def test_start_replaces_the_file_whole(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b'{"checkpoint":1,"old":true}\n{"done":"a"}\n')
    f = CheckpointFile(path)
    f.start({"kind": "new"}, [{"done": "b"}])
    f.append({"complete": True})
    f.close()
    assert [orjson.loads(x) for x in path.read_bytes().splitlines()] == [
        {"checkpoint": 1, "kind": "new"}, {"done": "b"}, {"complete": True}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]  # no temporary left
