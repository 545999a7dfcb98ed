"""Auth and routing failures (401, 403, 404, 405) stop a replay: nothing is checkpointed as
"rejected", no batch is split down to single visitors, and a resume with the right key or
URL sends everything (issue 19, item 2)."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest

from psanalytics.api.event_api import EventApi
from psanalytics.api.http import RetryPolicy
from psanalytics.replay import Checkpoint, EventApiSink, Replayer, ReplayError
from psanalytics.samples import generate


class Gate:
    """An Event API that answers ``status`` until ``open`` is set, then 204 (counting events)."""

    def __init__(self, status: int) -> None:
        self.status, self.open = status, False
        self.requests = 0
        self.events = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests += 1
            if not self.open:
                return httpx.Response(self.status, json={"error": {"code": "Unauthorized" if self.status == 401
                                                                    else "NotFound", "message": "no access"}})
            body = orjson.loads(request.content)
            self.events += sum(len(s["events"]) for v in body["visitors"] for s in v["snapshots"])
            return httpx.Response(204)


def sink(gate: Gate) -> EventApiSink:
    return EventApiSink(api=EventApi(transport=httpx.MockTransport(gate), policy=RetryPolicy.fast(6)))


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_auth_or_routing_failure_stops_the_run_and_a_resume_sends_everything(status, tmp_path):
    events = generate(1000, seed=4)
    ck = tmp_path / "run.ckpt"
    gate = Gate(status)
    with pytest.raises(ReplayError) as info:
        Replayer(sink(gate), account_id="42", max_visitors=10, workers=2, checkpoint=ck,
                 progress=False).run(events)
    msg = str(info.value)
    assert f"HTTP {status}" in msg and "stopped" in msg and "nothing was recorded as rejected" in msg
    # never retried, never split: at most the batches that were in flight (2 x workers)
    assert 1 <= gate.requests <= 4
    assert Checkpoint(ck).done == {}
    assert not (tmp_path / "run.rejected.jsonl").exists()
    gate.open = True
    report = Replayer(sink(gate), account_id="42", max_visitors=10, workers=2, checkpoint=ck,
                      progress=False).run(events)
    assert report.ok and report.skipped == 0
    assert gate.events == report.events == events.height


def test_cli_replay_to_a_wrong_url_exits_non_zero(tmp_path):
    from typer.testing import CliRunner

    from psanalytics.cli import app
    from psanalytics.emulator import serve
    from psanalytics.exports import write_events
    from psanalytics.schema import empty_frame

    src = write_events(generate(300, seed=2), tmp_path / "in.ndjson")
    with serve(empty_frame()) as srv:
        res = CliRunner().invoke(app, ["replay", str(src), "--url", srv.url + "/v2/nothing-here",
                                       "--account-id", "7", "--no-progress", "--max-visitors", "5"])
        journal = srv.state()["journal"]
    assert res.exit_code == 1, res.output
    assert "HTTP 404" in res.output and "stopped" in res.output
    assert len([j for j in journal if j["status"] == 404]) <= 8  # workers (4) x 2 in flight, no splitting
