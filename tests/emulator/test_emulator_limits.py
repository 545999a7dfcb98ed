"""The emulator as a server people point things at (issue 19, items 11 and 12): bounded
previews that stop at their deadline and cap their answer, request bodies refused before
they are read whole, connections that send no request head closed."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest
from emulator_helpers import AUTH, KEY

from psanalytics.emulator import Emulator, serve
from psanalytics.query.kql import KqlRuntimeError
from psanalytics.query.kql.engine import execute

V2 = "/api/v2.0/TrackEvents"


def test_previews_beyond_workers_and_queue_are_429_and_the_slot_is_given_back(small):
    with serve(small, api_key=KEY, preview_workers=1, preview_queue=0) as srv:
        entered, release = threading.Event(), threading.Event()
        real = srv.emulator._run_preview

        def blocking(query, scope):
            if query.startswith("Events | take 2"):
                entered.set()
                assert release.wait(60)
            return real(query, scope)

        srv.emulator._run_preview = blocking
        out: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: out.setdefault("first", httpx.post(
            srv.url + V2 + "/preview", json={"Query": "Events | take 2"}, headers=AUTH, timeout=60)))
        t.start()
        try:
            assert entered.wait(60)
            r = httpx.post(srv.url + V2 + "/preview", json={"Query": "Events | take 1"}, headers=AUTH)
            assert r.status_code == 429 and r.headers["Retry-After"] == "1"
            assert r.json()["error"] == {"code": "TooManyRequests", "message":
                                         "1 previews are running or waiting (at most 1 at once, 0 waiting); retry shortly"}
        finally:
            release.set()
            t.join(60)
        assert out["first"].status_code == 200 and out["first"].json()["count"] == 2
        r = httpx.post(srv.url + V2 + "/preview", json={"Query": "Events | take 1"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["count"] == 1


def test_a_preview_past_its_deadline_is_cancelled_not_left_running(small):
    heavy = ('Events | extend x = split(strcat(PageUri,PageUri,PageUri,PageUri), "") '
             '| summarize make_list(x)')
    with pytest.raises(KqlRuntimeError) as info:
        execute(heavy, {"Events": small}, timeout_s=0)
    assert str(info.value) == ("the query ran longer than 0 s and was stopped; make it lighter "
                               "(filter on EventTime first, take fewer rows)")
    assert execute("Events | count", {"Events": small}, timeout_s=60).frame.item() == small.height


def test_a_preview_answer_over_the_size_cap_is_400(small):
    emu = Emulator(small, api_key=KEY, preview_max_bytes=2_000)
    c = httpx.Client(base_url=emu.url, transport=emu.transport(), headers=AUTH)
    r = c.post(V2 + "/preview", json={"Query": "Events | take 50"})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("the result is ")
    assert r.json()["error"]["message"].endswith(" bytes, over the preview cap of 2,000: project fewer columns or take fewer rows")
    assert c.post(V2 + "/preview", json={"Query": "Events | count"}).status_code == 200


def test_request_bodies_over_the_cap_are_413_by_length_and_while_streaming(small):
    emu = Emulator(small, api_key=KEY, max_body_bytes=10_000)
    c = httpx.Client(base_url=emu.url, transport=emu.transport(), headers=AUTH)
    r = c.post("/v1/events", content=b"x" * 20_000)
    assert r.status_code == 413
    assert r.json()["error"] == {"code": "PayloadTooLarge",
                                 "message": "the request body is 20,000 bytes; the emulator reads at most 10,000"}

    def chunks():  # no Content-Length: counted while read
        for _ in range(30):
            yield b"y" * 1000

    with serve(small, api_key=KEY, max_body_bytes=10_000) as srv:
        r = httpx.post(srv.url + V2 + "/preview", content=chunks(), headers=AUTH)
        assert r.status_code == 413
        assert r.json()["error"]["message"] == "the request body is larger than the 10,000 bytes the emulator reads"
        assert httpx.post(srv.url + V2 + "/preview", json={"Query": "Events | count"},
                          headers=AUTH).status_code == 200


def test_a_connection_that_sends_no_whole_request_head_is_closed(small):
    with serve(small, api_key=KEY, header_timeout_s=0.2) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
        s.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        assert s.recv(1024) == b""  # closed by the server (recv waits up to the socket timeout)
        s.close()
        assert httpx.get(srv.url + "/_emulator/health").status_code == 200
