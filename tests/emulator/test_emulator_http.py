"""Contract tests over real HTTP (serve() on 127.0.0.1): every route and status code."""

from __future__ import annotations

import email.utils
import time

import httpx
import orjson
import polars as pl
import pytest
from emulator_helpers import AUTH, KEY, expected

from psanalytics import schema
from psanalytics.emulator import VERSION_HEADER, serve
from psanalytics.query.odata import filter_frame

V2 = "/api/v2.0/TrackEvents"


def page(client, **params):
    r = client.get(V2, params={f"${k}": v for k, v in params.items()})
    assert r.status_code == 200, r.text
    return r.json()


def err(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


# ------------------------------------------------------------------ auth and routing


def test_auth_both_headers_and_401(srv):
    with httpx.Client(base_url=srv.url) as c:
        assert c.get(V2, headers=AUTH).status_code == 200
        assert c.get(V2, headers={"Ocp-Apim-Subscription-Key": KEY}).status_code == 200
        assert c.get(V2, headers={"authorization": f"EPI-SINGLE {KEY}"}).status_code == 200
        e = err(c.get(V2), 401)
        assert e["code"] == "Unauthorized" and "epi-single" in e["message"]
        r = c.get(V2, headers={"Authorization": "epi-single wrong"})
        e = err(r, 401)
        assert KEY not in r.text and "wrong" not in r.text
        assert r.headers[VERSION_HEADER].startswith("psanalytics-emulator/")


def test_paths_case_insensitive_v1_and_unknown(client):
    a = page(client, top=5)
    for path in ("/api/v2.0/trackevents", "/API/V2.0/TRACKEVENTS", "/api/v1.0/trackevents/"):
        r = client.get(path, params={"$top": 5})
        assert r.status_code == 200 and r.json() == a
    e = err(client.get("/api/v3.0/TrackEvents"), 404)
    assert e == {"code": "NotFound", "message": "no such route: GET /api/v3.0/TrackEvents"}
    assert err(client.post(V2), 405)["code"] == "MethodNotAllowed"


def test_default_page_envelope_and_order(client, small):
    body = page(client)
    assert list(body) == ["items", "total", "count"]
    assert body["total"] == 62 and body["count"] == 62
    exp = expected(small)
    assert [i["TrackId"] for i in body["items"]] == exp.get_column("TrackId").to_list()
    assert schema.normalize(body).equals(exp)
    first = body["items"][0]
    assert list(first) == list(schema.API_ORDER)
    assert first["EventTime"] == "2024-03-01T00:00:00.0000000Z" and first["Payload"] is None
    assert first["PageTitle"] == "" and first["User"] == {"Email": "u0@example.com", "Name": "N"}
    assert body["items"][1]["Payload"] == {"epi": {"language": "sv"}, "total": 1}
    # ties at one instant come ordered by TrackId
    ids = [i["TrackId"] for i in body["items"]]
    assert ids.index("t-tie-a") + 1 == ids.index("t-tie-b")


def test_default_top_is_100(srv, small):
    big = pl.concat([small] * 3).with_columns(
        (pl.col("TrackId") + "-" + pl.int_range(pl.len()).cast(pl.String)).alias("TrackId"))
    with serve(big, api_key=KEY) as s2, httpx.Client(base_url=s2.url, headers=AUTH) as c:
        body = c.get(V2).json()
        assert (body["total"], body["count"]) == (186, 100)
        body = c.get(V2, params={"$skip": 150}).json()
        assert (body["total"], body["count"]) == (186, 36)


@pytest.mark.parametrize(
    "text",
    [
        "EventType eq epiPageView",
        "EventType eq 'epiPageView'",
        "EventType eq order AND User.Email ne ''",
        "EventType eq order and not (Scope eq shop)",
        "Payload.epi.language eq sv",
        "User.Email eq 'u2@example.com' OR Payload.total ge 55",
        "EventTime eq 2024-03-02",
        "EventTime ge 2024-03-01T05:00:00Z and EventTime lt 2024-03-02T05:00:00.0000020Z",
        "EventTime gt 2024-03-02T05:00:00.0000020Z and EventTime le 2024-03-03",
        "DeviceId eq 91687962-BC76-49A2-862C-E014441B8F6B",
        "Payload eq null and EventTime lt 2024-03-02",
    ],
)
def test_filters_over_http_match_local(client, small, text):
    body = page(client, filter=text, top=1000)
    exp = expected(filter_frame(small, text))
    assert body["total"] == exp.height == body["count"] and exp.height > 0
    assert schema.normalize(body).equals(exp)


def test_filter_errors_are_400_with_position(client):
    e = err(client.get(V2, params={"$filter": "EventType eq 'a' and"}), 400)
    assert e["code"] == "BadRequest"
    assert e["message"].startswith("invalid $filter at position 18: the filter ends after 'and'")
    for fn in ("contains", "startswith", "endswith"):
        e = err(client.get(V2, params={"$filter": f"{fn}(Value, 'v1')"}), 400)
        assert f"the function {fn}() is not supported" in e["message"]
    e = err(client.get(V2, params={"$filter": "EventType in (order, home)"}), 400)
    assert "the 'in' operator is not supported" in e["message"]


def test_lenient_server_allows_functions(small):
    with serve(small, api_key=KEY, lenient=True) as s2, httpx.Client(base_url=s2.url, headers=AUTH) as c:
        body = c.get(V2, params={"$filter": "contains(Value, 'v1')", "$top": 100}).json()
        assert body["total"] == 11
        body = c.get(V2, params={"$filter": "EventType in (order, home)"}).json()
        assert body["total"] == 26


def test_window_rule_10000_as_shipped_callers_used_it(client, small):
    # $top=10000 was sent by shipped code that expected 200 (spec section 5): allowed.
    assert page(client, skip=9900, top=99) == {"items": [], "total": 62, "count": 0}
    assert page(client, top=9999)["count"] == 62
    assert page(client, top=10000)["count"] == 62
    assert page(client, skip=1, top=9999)["count"] == 61
    e = err(client.get(V2, params={"$skip": 1, "$top": 10000}), 400)
    assert e["message"] == ("the result window is too large: $skip + $top = 10,001 must be at most "
                            "10,000 (skip=1, top=10000)")
    err(client.get(V2, params={"$top": -1}), 400)
    err(client.get(V2, params={"$top": "ten"}), 400)


def test_unknown_query_parameters_are_ignored_as_aspnet_did(client, small):
    # Shipped callers sent appKey=<key> and a bare 0 (spec section 5); both worked.
    want = page(client, top=5)
    for extra in ({"appKey": "abc"}, {"0": ""}, {"$count": "true"}):
        r = client.get(V2, params={"$top": 5, **extra})
        assert r.status_code == 200 and r.json() == want
    r = client.get(V2 + "?$top=5&0")
    assert r.status_code == 200 and r.json() == want


def test_strict_window_reads_the_docs_literally(small):
    with serve(small, api_key=KEY, lenient_window=False) as s2, httpx.Client(base_url=s2.url, headers=AUTH) as c:
        e = c.get(V2, params={"$skip": 1, "$top": 9999}).json()["error"]
        assert e["message"] == ("the result window is too large: $skip + $top = 10,000 must be less than "
                                "10,000 (skip=1, top=9999)")
        assert c.get(V2, params={"$top": 10000}).status_code == 400


def test_orderby_spellings(client, small):
    exp = small.sort(["Value", "EventTime", "TrackId"], descending=[True, False, False])
    for name in ("$orderby", "$orderBy", "$ORDERBY"):
        r = client.get(V2, params={name: "Value DESC", "$top": 1000})
        assert [i["TrackId"] for i in r.json()["items"]] == exp.get_column("TrackId").to_list()
    body = page(client, orderby="User.Email asc, EventTime desc", top=5)
    assert [i["TrackId"] for i in body["items"]] == ["t-059", "t-057", "t-055", "t-053", "t-051"]
    e = err(client.get(V2, params={"$orderby": "Payload desc"}), 400)
    assert e["message"].startswith("invalid $orderby at position 1: cannot order by 'Payload'")


def test_skip_pages_are_exact(client, small):
    got = []
    for skip in range(0, 62, 25):
        got += page(client, skip=skip, top=25, orderby="EventTime asc,TrackId asc")["items"]
    assert schema.normalize(got).equals(expected(small))


# ------------------------------------------------------------------ preview


SEED_QUERY = """Events
        | where EventTime between (todatetime('2019-01-01') .. endofday(now()))
            and EventType == 'pageview'
            and User.Email != ''
        | take 2"""


def test_preview_seed_example(client, small):
    r = client.post(f"{V2}/preview", json={"Query": SEED_QUERY, "Scope": "default"},
                    headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["items", "count"] and body["count"] == 2
    pool = small.filter((pl.col("EventType") == "pageview") & (pl.col("User").struct.field("Email") != "")
                        & (pl.col("Scope") == "default"))
    got = schema.normalize(body)
    assert got.height == 2 and set(got.get_column("TrackId")) <= set(pool.get_column("TrackId"))
    assert list(body["items"][0]) == list(schema.API_ORDER)


def test_preview_lower_case_keys_scope_projection_and_cap(client, small):
    r = client.post(f"{V2}/preview", json={"query": "Events | where Scope == 'shop' | count", "scope": "shop"})
    assert r.json() == {"items": [{"Count": 6}], "count": 1}
    r = client.post(f"{V2}/preview", json={"Query": "Events | project TrackId, EventTime | take 1"})
    assert r.json() == {"items": [{"TrackId": "t-001", "EventTime": "2024-03-01T01:00:00.0000001Z"}],
                        "count": 1}


def test_preview_caps_at_row_cap(small):
    with serve(small, api_key=KEY, preview_row_cap=7) as s2, httpx.Client(base_url=s2.url, headers=AUTH) as c:
        body = c.post(f"{V2}/preview", json={"Query": "Events | take 50"}).json()
        assert body["count"] == 7 and len(body["items"]) == 7


def test_preview_errors(client):
    e = err(client.post(f"{V2}/preview", json={"Query": "Events | wher EventType == 'x'"}), 400)
    assert "line 1" in e["message"] or "1:" in e["message"]
    assert err(client.post(f"{V2}/preview", content=b"{nope"), 400)["message"].startswith("the body is not JSON")
    assert "Query" in err(client.post(f"{V2}/preview", json={"Scope": "default"}), 400)["message"]
    assert "invalid scope" in err(client.post(f"{V2}/preview", json={"Query": "Events", "Scope": "Bad-Scope"}), 400)["message"]


def test_preview_time_limit_is_400(small):
    with serve(small, api_key=KEY, preview_timeout_s=0.000001) as s2, \
            httpx.Client(base_url=s2.url, headers=AUTH) as c:
        e = err(c.post(f"{V2}/preview", json={"Query": "Events | summarize count() by EventType"}), 400)
        assert e["message"] == ("the query ran longer than 1e-06 s and was stopped; make it lighter "
                                "(filter on EventTime first, take fewer rows)")


# ------------------------------------------------------------------ delete


def test_delete_two_stage_404_and_purge(client, srv):
    r = client.delete(f"{V2}/default/t-001")
    assert r.status_code == 200
    assert page(client, top=1000)["total"] == 61
    assert "t-001" not in srv.events().get_column("TrackId").to_list()
    assert srv.state()["pending_deletions"] == 1
    e = err(client.delete(f"{V2}/default/t-001"), 404)
    assert e == {"code": "NotFound", "message": "no tracking event 't-001' in scope 'default'"}
    err(client.delete(f"{V2}/default/t-000"), 404)  # t-000 lives in scope "shop"
    assert client.delete("/api/v1.0/trackingevents/shop/t-000").status_code == 200
    err(client.delete(f"{V2}/Bad-Scope/t-002"), 400)
    assert client.post("/_emulator/purge").json() == {"purged": 2}
    st = srv.state()
    assert (st["pending_deletions"], st["deleted_total"], st["purged_total"], st["events"]) == (0, 2, 2, 60)


def test_delete_429_past_pending_limit(small):
    with serve(small, api_key=KEY, pending_delete_limit=2) as s2, httpx.Client(base_url=s2.url, headers=AUTH) as c:
        assert c.delete(f"{V2}/default/t-001").status_code == 200
        assert c.delete(f"{V2}/default/t-002").status_code == 200
        r = c.delete(f"{V2}/default/t-003")
        e = err(r, 429)
        assert e["code"] == "TooManyRequests" and "more than 2 deletions" in e["message"]
        assert int(r.headers["Retry-After"]) >= 1
        assert s2.state()["pending_deletions"] == 2 and s2.state()["events"] == 60
        assert c.post("/_emulator/purge").json() == {"purged": 2}
        assert c.delete(f"{V2}/default/t-003").status_code == 200


# ------------------------------------------------------------------ tracking API


def test_track_and_bulk_are_queryable_at_once(client, srv):
    one = {"trackId": "order-1", "deviceId": "dev-x", "eventType": "order", "value": "Ordered",
           "eventTime": "2024-03-05T10:00:00.1234567Z",
           "pageUri": "https://e/x", "payload": {"total": 9}, "user": {"email": "a@b.c", "name": "A", "info": {"m": 1}}}
    r = client.post("/api/v1.0/Track", json=one, headers={"Epi-User-IP-Address": "::1"})
    assert r.status_code == 202 and r.content == b""
    got = page(client, filter="DeviceId eq 'dev-x'")
    assert got["total"] == 1
    ev = got["items"][0]
    assert ev["TrackId"] == "order-1" and ev["Scope"] == "default" and ev["CountryCode"] == "Localhost"
    assert (ev["RemoteAddress"], ev["EventTime"], ev["Payload"]) == ("::1", "2024-03-05T10:00:00.1234567Z", {"total": 9})
    assert ev["User"] == {"Email": "a@b.c", "Name": "A", "Info": {"m": 1}}
    bulk = [{"deviceId": "dev-y", "eventType": "home", "value": f"v{i}", "remoteAddress": ip,
             "eventTime": f"2024-03-0{i + 1}T00:00:00Z", "scope": "shop"}
            for i, ip in enumerate(["127.0.0.1", "81.2.3.4", "10.0.0.1"])]
    assert client.post("/api/v1.0/trackbulk", json=bulk).status_code == 202
    got = page(client, filter="DeviceId eq 'dev-y'")["items"]
    assert [(e["Value"], e["CountryCode"], e["Scope"]) for e in got] == [
        ("v0", "Localhost", "shop"), ("v1", "SE", "shop"), ("v2", "", "shop")]
    assert [e["TrackId"] for e in got] == ["", "", ""]  # tracked without one: "" (the real service)
    assert page(client, top=1000)["total"] == 66
    # events arriving in the middle of the timeline keep the store sorted
    body = page(client, top=1000)
    times = [e["EventTime"] for e in body["items"]]
    assert times == sorted(times)


def test_track_limits_and_required_fields(client):
    e = err(client.post("/api/v1.0/Track", json={"deviceId": "d", "value": "v"}), 400)
    assert e["message"] == "the event: missing required field(s) eventType"
    bulk = [{"deviceId": "d", "eventType": "t", "value": "v"}] * 101
    assert "at most 100 events, got 101" in err(client.post("/api/v1.0/TrackBulk", json=bulk), 400)["message"]
    big = {"deviceId": "d", "eventType": "t", "value": "v", "payload": {"x": "y" * 262_144}}
    e = err(client.post("/api/v1.0/TrackBulk", json=[big]), 400)
    assert e["message"].startswith("event [0] is 262,") and "at most 262,144" in e["message"]
    e = err(client.post("/api/v1.0/Track", json={"deviceId": "d", "eventType": "t", "value": "v",
                                                  "eventTime": "yesterday"}), 400)
    assert "eventTime 'yesterday' is not an ISO 8601 time" in e["message"]
    err(client.post("/api/v1.0/Track", content=b"[1"), 400)
    assert page(client)["total"] == 62  # nothing was added


# ------------------------------------------------------------------ Event API


def _body(uuid="u-1", ts=1709546400000, **ev):
    return {"account_id": "123", "project_id": "456", "anonymize_ip": True, "client_name": "psanalytics",
            "visitors": [{"visitor_id": "v1", "attributes": [],
                          "snapshots": [{"decisions": [], "events": [
                              {"entity_id": "7001", "key": "order", "uuid": uuid, "timestamp": ts, **ev}]}]}]}


def test_event_api_204_dedupe_and_state(srv):
    with httpx.Client(base_url=srv.url) as c:  # no auth on the Event API
        assert c.post("/v1/events", json=_body()).status_code == 204
        assert c.post("/v1/events", json=_body()).status_code == 204  # duplicate
        assert c.post("/v1/events", json=_body(uuid="u-2", revenue=1999)).status_code == 204
    st = srv.state()
    assert st["event_api"] == {"requests": 3, "accepted": 2, "rejected": 0, "duplicates": 1}
    acc = srv.emulator.accepted_events()
    assert acc.get_column("uuid").to_list() == ["u-1", "u-2"]
    assert acc.get_column("revenue").to_list() == [None, 1999]
    assert [a["uuid"] for a in st["accepted"]] == ["u-1", "u-2"]


def test_event_api_400s_and_strict(srv):
    with httpx.Client(base_url=srv.url) as c:
        assert err(c.post("/v1/events", content=b"not json"), 400)["message"].startswith("the body is not JSON")
        big = b'{"account_id":"1","visitors":[],"pad":"' + b"x" * 3_500_000 + b'"}'
        assert "at most 3,500,000" in err(c.post("/v1/events", content=big), 400)["message"]
        bad = _body(ts=1709546400)  # seconds, not milliseconds
        assert c.post("/v1/events", json=bad).status_code == 204  # lenient by default
        r = c.post("/v1/events", json=bad, headers={"X-Optimizely-Strict": "true"})
        assert r.status_code == 400
        assert r.json() == {"errors": [{
            "path": "visitors[0].snapshots[0].events[0].timestamp",
            "message": "must be epoch milliseconds (13 digits), got 1709546400"}]}
        r = c.post("/v1/events", json={"visitors": [{}]}, headers={"X-Optimizely-Strict": "true"})
        assert [e["path"] for e in r.json()["errors"]] == [
            "account_id", "visitors[0].visitor_id", "visitors[0].snapshots"]
    rej = srv.emulator.rejected_events()
    assert rej.get_column("path").to_list() == ["visitors[0].snapshots[0].events[0].timestamp"]
    assert srv.state()["event_api"]["accepted"] == 0


def test_official_sdk_events_are_accepted(srv):
    from optimizely import entities, logger
    from optimizely.event import payload, user_event
    from optimizely.event.event_factory import EventFactory

    ctx = user_event.EventContext("123", "456", "7", True, "US")
    attrs = [payload.VisitorAttribute("country", "country", "custom", "SE")]
    exp = entities.Experiment(id="200", key="exp", status="Running", audienceIds=[], variations=[],
                              forcedVariations={}, trafficAllocation=[], layerId="100")
    imp = user_event.ImpressionEvent(ctx, "dev-b", exp, attrs, entities.Variation(id="300", key="var_a"),
                                     "hero", "exp", "experiment", True)
    conv = user_event.ConversionEvent(ctx, entities.Event(id="7001", key="order", experimentIds=[]),
                                      "dev-a", attrs, {"revenue": 4200, "currency": "EUR"})
    with httpx.Client(base_url=srv.url) as c:
        for ev in (imp, conv):
            le = EventFactory.create_log_event([ev], logger.NoOpLogger())
            r = c.post("/v1/events", content=orjson.dumps(le.params),
                       headers={"Content-Type": "application/json", "X-Optimizely-Strict": "true"})
            assert r.status_code == 204, r.text
    acc = srv.emulator.accepted_events()
    assert acc.get_column("visitor_id").to_list() == ["dev-b", "dev-a"]
    assert acc.get_column("key").to_list() == ["campaign_activated", "order"]
    assert acc.get_column("entity_id").to_list() == ["100", "7001"]
    assert acc.get_column("revenue").to_list() == [None, 4200]
    assert acc.get_column("client_name").to_list() == ["python-sdk", "python-sdk"]
    assert orjson.loads(acc.get_column("decisions")[0])[0]["variation_id"] == "300"
    assert [a["uuid"] for a in srv.state()["accepted"]] == acc.get_column("uuid").to_list()


# ------------------------------------------------------------------ faults


def test_fault_statuses_and_retry_after_forms(srv):
    date = email.utils.formatdate(usegmt=True)
    with httpx.Client(base_url=srv.url, headers=AUTH) as c:
        srv.set_faults({"error_rate": 1.0, "error_statuses": (503,)})
        e = err(c.get(V2), 503)
        assert e["code"] == "ServiceUnavailable"
        for ra in ("0", "2", date):
            srv.set_faults({"rate_limit_rate": 1.0, "retry_after": ra})
            r = c.get(V2)
            err(r, 429)
            assert r.headers["Retry-After"] == ra
        srv.set_faults({"rate_limit_rate": 1.0, "retry_after": None})
        assert "Retry-After" not in c.get(V2).headers
        # only the named routes are faulted; admin routes never are
        srv.set_faults({"error_rate": 1.0, "routes": ["preview"]})
        assert c.get(V2).status_code == 200
        assert c.post(f"{V2}/preview", json={"Query": "Events | take 1"}).status_code in (500, 502, 503)
        assert c.get("/_emulator/health").status_code == 200


def test_dropped_and_truncated_over_real_socket(srv):
    with httpx.Client(base_url=srv.url, headers=AUTH) as c:
        srv.set_faults({"drop_rate": 1.0})
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            c.get(V2)
        # A drop reads the request first, so a body still on its way makes no reset (which
        # a client would see as a ReadError at random: 1 in 5 such posts when it did not).
        for size in (1_000, 2_000_000) * 3:
            body = {"deviceId": "d", "eventType": "t", "value": "v", "payload": {"x": "y" * size}}
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                c.post("/api/v1.0/Track", json=body)
        srv.set_faults({"truncate_rate": 1.0})
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            c.get(V2)
        srv.set_faults(None)
        assert c.get(V2).status_code == 200
    kinds = [j["fault"] for j in srv.state()["journal"]]
    assert kinds == ["drop"] * 7 + ["truncate", None]
    assert srv.state()["tracked_total"] == 0


def test_latency_and_slow_drip(srv):
    with httpx.Client(base_url=srv.url, headers=AUTH) as c:
        srv.set_faults({"latency": 0.05})
        assert c.get(V2, params={"$top": 1}).status_code == 200
        srv.set_faults({"drip_rate": 1.0, "drip_seconds": 0.2})
        r = c.get(V2)
        assert r.status_code == 200 and r.json()["total"] == 62  # slow, but whole
        with pytest.raises(httpx.ReadTimeout):
            c.get(V2, timeout=httpx.Timeout(5.0, read=0.005))
        srv.set_faults({"drip_rate": 1.0, "drip_seconds": 5})
        assert c.delete(f"{V2}/default/t-009").status_code == 200  # never on writes
    deadline = time.monotonic() + 5  # the timed-out request is journaled when the server ends it
    while len(srv.state()["journal"]) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    j = sorted(srv.state()["journal"], key=lambda e: (e["method"], e["query"], e["duration_ms"]))
    assert [(e["method"], e["fault"]) for e in j] == [("DELETE", None), ("GET", "drip"), ("GET", "drip"),
                                                      ("GET", None)]
    assert j[3]["query"] == "%24top=1" and j[3]["duration_ms"] >= 50  # lower bounds: sleeps
    assert j[2]["duration_ms"] >= 200


def test_faulted_requests_never_change_the_store(srv):
    with httpx.Client(base_url=srv.url, headers=AUTH) as c:
        srv.set_faults({"error_rate": 0.5, "drop_rate": 0.5, "seed": 1})
        for tid in ("t-001", "t-002", "t-003", "t-004"):
            # A dropped connection is "disconnected without a response" (the emulator reads
            # the request before closing); ReadError too, as a real network may say it.
            try:
                c.delete(f"{V2}/default/{tid}")
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
            try:
                c.post("/api/v1.0/Track", json={"deviceId": "d", "eventType": "t", "value": "v"})
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
    st = srv.state()
    assert st["events"] == 62 and st["deleted_total"] == 0 and st["tracked_total"] == 0


def test_faults_are_seeded(srv):
    def run():
        srv.set_faults({"seed": 5, "error_rate": 0.3, "rate_limit_rate": 0.2, "retry_after": "0"})
        with httpx.Client(base_url=srv.url, headers=AUTH) as c:
            return [c.get(V2, params={"$top": 1}).status_code for _ in range(30)]

    a, b = run(), run()
    assert a == b and {200, 429} <= set(a) and len(set(a)) >= 3


def test_admin_routes(srv, client):
    r = client.post("/_emulator/faults", content=b"error_rate=1.0,error_statuses=500,seed=3")
    assert r.json()["faults"]["error_statuses"] == [500]
    assert client.get(V2).status_code == 500
    assert client.post("/_emulator/faults", json=None).json() == {"faults": None}
    e = err(client.post("/_emulator/faults", json={"bogus": 1}), 400)
    assert "unknown fault key(s) ['bogus']" in e["message"]
    client.delete(f"{V2}/default/t-005")
    h = client.get("/_emulator/health").json()
    assert h["status"] == "ok" and h["events"] == 61
    st = client.get("/_emulator/state", params={"limit": 2}).json()
    assert st["events"] == 61 and len(st["journal"]) == 2
    assert st["journal"][-1]["path"] == "/_emulator/health"
    docs = client.get("/_emulator/docs").json()
    assert {"method": "POST", "path": "/v1/events", "auth": "none",
            "what": "Event API: 204; 400 non-JSON, > 3.5 MB, or strict errors"} in docs["routes"]
    assert client.post("/_emulator/reset").json() == {"ok": True, "events": 62}
    assert srv.state()["journal"][-1]["path"] == "/_emulator/reset"


# ------------------------------------------------------------------ in-process transports


def test_in_process_sync_and_async_transports(small):
    import asyncio

    from psanalytics.emulator import Emulator

    emu = Emulator(small, api_key=KEY)
    with httpx.Client(base_url=emu.url, transport=emu.transport(), headers=AUTH) as c:
        body = c.get(V2, params={"$filter": "EventType eq order", "$top": 3}).json()
        assert body["total"] == 12 and body["count"] == 3
        emu.set_faults({"drop_rate": 1.0})
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(V2)
        emu.set_faults({"truncate_rate": 1.0})
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            c.get(V2)
        emu.set_faults(None)

    async def go():
        async with httpx.AsyncClient(base_url=emu.url, transport=emu.async_transport(), headers=AUTH) as c:
            return (await c.get(V2, params={"$top": 3})).json()

    assert asyncio.run(go())["count"] == 3
    assert KEY not in repr(emu)


def test_preview_runs_queries_without_events_and_keeps_the_cap(small):
    # issue 14: print/range/datatable need no Events table; the 1,000-row cap still holds
    with serve(small, api_key=KEY, preview_row_cap=7) as s2, \
            httpx.Client(base_url=s2.url, headers=AUTH) as c:
        body = c.post(f"{V2}/preview", json={"Query": "range x from 1 to 50 step 1"}).json()
        assert body == {"items": [{"x": i} for i in range(1, 8)], "count": 7}
        body = c.post(f"{V2}/preview", json={"Query": "print a = 1, b = 'x'"}).json()
        assert body == {"items": [{"a": 1, "b": "x"}], "count": 1}


def test_preview_sample_as_in_the_vendor_examples(client, small):
    # the vendor's documented preview examples use '| sample N' (issue 13)
    body = client.post(f"{V2}/preview", json={"Query": "Events | sample 4 | project TrackId",
                                              "Scope": "shop"}).json()
    shop = set(small.filter(pl.col("Scope") == "shop").get_column("TrackId"))
    got = [r["TrackId"] for r in body["items"]]
    assert body["count"] == 4 and len(set(got)) == 4 and set(got) <= shop
