from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime

import orjson
import polars as pl
import pytest

from psanalytics.errors import InputError
from psanalytics.replay import (
    ACTIVATE_EVENT_KEY,
    EventMap,
    MappingError,
    body_prefix,
    encode_visitors,
    event_uuid,
    from_visitor_log,
    to_visitors,
    truncate_ip,
)
from psanalytics.replay.mapping import REPLAY_NAMESPACE


def test_visitors_exact(events):
    vis = list(to_visitors(events, account_id="123"))
    search = [v for v in vis if v["visitor_id"] == "dev-b"][0]["snapshots"][0]["events"][2]
    assert vis == [
        {
            "visitor_id": "dev-a",
            "attributes": [{"entity_id": "country", "key": "country", "type": "custom", "value": "SE"}],
            "snapshots": [{"events": [
                {"entity_id": "home", "uuid": event_uuid("t-1"), "key": "home",
                 "timestamp": 1709546400000, "tags": {"name": "Start page", "contentLink": "5"}},
                {"entity_id": "order", "uuid": event_uuid("t-3"), "key": "order",
                 "timestamp": 1709546430123, "revenue": 61185,
                 "tags": {"orderId": "PO-1", "total": 611.85, "currency": "EUR"}},
                {"entity_id": "home", "uuid": event_uuid("t-6"), "key": "home", "timestamp": 1709625600000},
            ]}],
        },
        {
            "visitor_id": "dev-b",
            "attributes": [{"entity_id": "country", "key": "country", "type": "custom", "value": "DE"}],
            "snapshots": [{"events": [
                {"entity_id": "product", "uuid": event_uuid("t-2"), "key": "product", "timestamp": 1709546401500},
                {"entity_id": "epiHeroBlockClick", "uuid": event_uuid("t-4"), "key": "epiHeroBlockClick",
                 "timestamp": 1709546460000, "tags": {"target": "/sale"}},
                {"entity_id": "epiSearch", "uuid": search["uuid"], "key": "epiSearch",
                 "timestamp": 1709546520000, "tags": {"keyword": "tents", "hits": 28, "exact": True}},
            ]}],
        },
    ]
    # 13-digit millisecond timestamps
    assert all(len(str(e["timestamp"])) == 13 for v in vis for s in v["snapshots"] for e in s["events"])


def test_uuid_deterministic_and_content_based(events):
    a = encode_visitors(events)
    b = encode_visitors(events)
    assert a.get_column("json").to_list() == b.get_column("json").to_list()
    u = orjson.loads(a.get_column("json")[1])["snapshots"][0]["events"][2]["uuid"]
    assert uuid.UUID(u).version == 5
    assert u not in {event_uuid(t) for t in ("", "t-1", "t-2", "t-3", "t-4", "t-6")}
    changed = events.with_columns(
        pl.when(pl.col("TrackId") == "").then(pl.lit("Searched tent")).otherwise(pl.col("Value")).alias("Value")
    )
    u2 = orjson.loads(encode_visitors(changed).get_column("json")[1])["snapshots"][0]["events"][2]["uuid"]
    assert u2 != u
    assert event_uuid("t-1") == str(uuid.uuid5(REPLAY_NAMESPACE, "t-1"))


def test_uuid5_many_is_uuid5_for_any_text():
    from psanalytics.replay._text import _uuid5_many

    names = ["", "t-1", "Åsa Öberg ✓ 𝄞", "x" * 5000, "a\x1fb"]
    want = [str(uuid.uuid5(REPLAY_NAMESPACE, n)) for n in names]
    assert _uuid5_many(names).to_list() == want
    assert _uuid5_many(pl.Series(names)).to_list() == want
    assert _uuid5_many([]).to_list() == []


def test_encode_columns(events):
    v = encode_visitors(events)
    assert v.columns == ["visitor_id", "session_id", "json", "nbytes", "events", "first_ms", "last_ms", "offsets"]
    assert v.select("visitor_id", "events", "first_ms", "last_ms").rows() == [
        ("dev-a", 3, 1709546400000, 1709625600000),
        ("dev-b", 3, 1709546401500, 1709546520000),
    ]
    assert v.get_column("offsets").to_list() == [[0, 2, 5], [1, 3, 4]]
    assert v.get_column("nbytes").to_list() == [len(t.encode()) for t in v.get_column("json")]


def test_event_map_entities_revenue_and_decisions(events):
    emap = {
        "order": {"entity_id": "7001", "key": "purchase"},
        "home": "7000",
        "epiHeroBlockClick": {"decision": {"campaign_id": "100", "experiment_id": "200",
                                           "variation_id": "$.variation.id",
                                           "metadata": {"flag_key": "hero", "variation_key": "b"}}},
    }
    vis = list(to_visitors(events, account_id="123", event_map=emap))
    a_events = vis[0]["snapshots"][0]["events"]
    assert [(e["entity_id"], e["key"], e.get("revenue")) for e in a_events] == [
        ("7000", "home", None), ("7001", "purchase", 61185), ("7000", "home", None)]
    b = vis[1]
    assert [list(s) for s in b["snapshots"]] == [["events"], ["decisions", "events"], ["events"]]
    act = b["snapshots"][1]
    assert act["decisions"] == [{"campaign_id": "100", "experiment_id": "200", "variation_id": "301",
                                 "metadata": {"flag_key": "hero", "rule_key": "200", "rule_type": "experiment",
                                              "variation_key": "b", "enabled": True}}]
    assert act["events"] == [{"entity_id": "100", "uuid": event_uuid("t-4"), "key": ACTIVATE_EVENT_KEY,
                              "timestamp": 1709546460000}]
    assert [e["key"] for e in b["snapshots"][2]["events"]] == ["epiSearch"]


def test_unmapped_skip_and_error(events):
    vis = list(to_visitors(events, account_id="1", event_map=EventMap(events={"order": "7001"}, unmapped="skip")))
    assert [(v["visitor_id"], [e["key"] for s in v["snapshots"] for e in s["events"]]) for v in vis] == [
        ("dev-a", ["order"])]
    with pytest.raises(MappingError, match="EventType 'epiHeroBlockClick' is not in the event map"):
        list(to_visitors(events, account_id="1", event_map=EventMap(events={"order": "1"}, unmapped="error")))
    with pytest.raises(MappingError, match="unknown keys \\['revnue'\\]"):
        list(to_visitors(events, account_id="1", event_map={"order": {"revnue": "total"}}))
    vis = list(to_visitors(events, account_id="1", event_map={"home": {"skip": True}}))
    assert sum(len(s["events"]) for v in vis for s in v["snapshots"]) == 4


def test_sessions_column_frame_and_events_column(events):
    by_col = encode_visitors(events, sessions="SessionId")
    assert by_col.select("visitor_id", "session_id", "events").rows() == [
        ("dev-a", "s-a1", 2), ("dev-b", "s-b1", 3), ("dev-a", "s-a2", 1)]
    assert orjson.loads(by_col.get_column("json")[0])["session_id"] == "s-a1"
    sess = events.select("DeviceId", "EventTime", pl.format("x-{}", pl.col("SessionId")).alias("session_id"))
    by_frame = encode_visitors(events, sessions=sess)
    assert by_frame.get_column("session_id").to_list() == ["x-s-a1", "x-s-b1", "x-s-a2"]
    carried = events.with_columns(pl.format("c-{}", pl.col("SessionId")).alias("session_id"))
    assert encode_visitors(carried).get_column("session_id").to_list() == ["c-s-a1", "c-s-b1", "c-s-a2"]
    with pytest.raises(MappingError, match="lacks columns \\['session_id'\\]"):
        encode_visitors(events, sessions=events.select("DeviceId", "EventTime"))


def test_stitched_user_ids(events):
    v = encode_visitors(events, visitor_id="user")
    anna = str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/user"),
                          "anna@example.com"))
    assert v.select("visitor_id", "events").rows() == [(anna, 3), ("dev-b", 3)]
    assert "Anna@Example.com" not in v.get_column("json").str.join("").item()
    with pytest.raises(MappingError, match="visitor_id='nope'"):
        encode_visitors(events, visitor_id="nope")


def test_attributes_from_columns(events):
    emap = EventMap(attributes={"country": "CountryCode", "scope": ("9001", "Scope"), "ip": "RemoteAddress"})
    v = list(to_visitors(events, account_id="1", event_map=emap, truncate_ips=True))
    assert v[0]["attributes"] == [
        {"entity_id": "country", "key": "country", "type": "custom", "value": "SE"},
        {"entity_id": "ip", "key": "ip", "type": "custom", "value": "94.27.91.0"},
    ]
    assert v[1]["attributes"][1]["value"] == "2a00:23c4:a851::"
    with pytest.raises(MappingError, match="reads column 'Nope'"):
        list(to_visitors(events, account_id="1", event_map=EventMap(attributes={"x": "Nope"})))


def test_truncate_ip():
    assert truncate_ip("94.27.91.168") == "94.27.91.0"
    assert truncate_ip("2a00:23c4:a851:23e1:731d:77a1:e061:138e") == "2a00:23c4:a851::"
    assert truncate_ip("::ffff:10.1.2.3") == "::ffff:10.1.2.0"
    assert truncate_ip("") == ""
    assert truncate_ip("localhost") == "localhost"


def test_account_id_required(events):
    with pytest.raises(MappingError, match="account_id is required"):
        list(to_visitors(events, account_id=""))


def test_body_prefix():
    p = body_prefix(account_id="123", project_id="456", client_version="9")
    assert orjson.loads(p + b"]}") == {
        "account_id": "123", "project_id": "456", "client_name": "psanalytics/replay", "client_version": "9",
        "anonymize_ip": True, "enrich_decisions": True, "visitors": []}
    assert orjson.loads(body_prefix(account_id="1", anonymize_ip=False) + b"]}")["anonymize_ip"] is False


def test_from_visitor_log_roundtrip(events, tmp_path):
    vis = encode_visitors(events, sessions="SessionId")
    body = body_prefix(account_id="123", project_id="9") + ",".join(vis.get_column("json")).encode() + b"]}"
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(body + b"\n" + body + b"\n"))
    df = from_visitor_log(path)
    assert df.height == 12
    one = from_visitor_log(orjson.loads(body))
    assert one.columns == ["account_id", "project_id", "visitor_id", "session_id", "snapshot", "timestamp", "uuid",
                           "entity_id", "key", "type", "value", "revenue", "quantity", "tags", "decisions",
                           "attributes", "source_line"]
    assert one.select("visitor_id", "session_id", "key", "revenue").rows() == [
        ("dev-a", "s-a1", "home", None), ("dev-a", "s-a1", "order", 61185),
        ("dev-b", "s-b1", "product", None), ("dev-b", "s-b1", "epiHeroBlockClick", None),
        ("dev-b", "s-b1", "epiSearch", None), ("dev-a", "s-a2", "home", None)]
    assert one.get_column("timestamp")[1] == datetime(2024, 3, 4, 10, 0, 30, 123000, tzinfo=UTC)
    assert one.get_column("attributes")[0].to_list() == [
        {"entity_id": "country", "key": "country", "type": "custom", "value": "SE"}]
    assert sorted(one.get_column("uuid").to_list()) == sorted(df.get_column("uuid").unique().to_list())


def test_from_visitor_log_sdk_logevent_and_errors(tmp_path):
    from optimizely import entities, logger
    from optimizely.event import payload, user_event
    from optimizely.event.event_factory import EventFactory

    ctx = user_event.EventContext("123", "456", "7", True, "US")
    attrs = [payload.VisitorAttribute("country", "country", "custom", "SE")]
    exp = entities.Experiment(id="200", key="exp", status="Running", audienceIds=[], variations=[],
                              forcedVariations={}, trafficAllocation=[], layerId="100")
    imp = user_event.ImpressionEvent(ctx, "u1", exp, attrs, entities.Variation(id="300", key="a"),
                                     "flag", "exp", "experiment", True)
    le = EventFactory.create_log_event(imp, logger.NoOpLogger())
    df = from_visitor_log([le, {"url": le.url, "params": le.params}])
    assert df.select("account_id", "project_id", "visitor_id", "key", "entity_id").rows() == [
        ("123", "456", "u1", "campaign_activated", "100")] * 2
    assert df.get_column("decisions")[0].to_list() == [
        {"campaign_id": "100", "experiment_id": "200", "variation_id": "300", "is_campaign_holdback": None}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(orjson.dumps(le.params).decode() + "\n{oops\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        from_visitor_log(bad)
    with pytest.raises(InputError, match="no 'visitors'"):
        from_visitor_log({"account_id": "1"})
    with pytest.raises(InputError, match="no such file"):
        from_visitor_log(tmp_path / "missing.jsonl")


def test_sessionize_integration(events):
    from psanalytics.sessions import sessionize

    s = sessionize(events)
    by_result = encode_visitors(events, sessions=s)
    assert by_result.select("visitor_id", "session_id", "events").rows() == [
        ("dev-a", "dev-a:1", 2), ("dev-b", "dev-b:1", 3), ("dev-a", "dev-a:2", 1)]
    assert encode_visitors(events, sessions=True).equals(by_result)
    assert encode_visitors(s.events).equals(by_result)


def test_tags_keep_json_types_when_a_key_mixes_them():
    from psanalytics.schema import normalize

    rows = [
        {"TrackId": "1", "DeviceId": "d", "EventType": "order", "EventTime": "2024-01-01T00:00:00Z",
         "Payload": {"total": 12, "x": "a\nb", "u": "ö"}},
        {"TrackId": "2", "DeviceId": "d", "EventType": "order", "EventTime": "2024-01-01T00:00:01Z",
         "Payload": {"total": 12.5}},
        {"TrackId": "3", "DeviceId": "d", "EventType": "x", "EventTime": "2024-01-01T00:00:02Z", "Payload": {"n": 1}},
        {"TrackId": "4", "DeviceId": "d", "EventType": "x", "EventTime": "2024-01-01T00:00:03Z", "Payload": {"n": "s"}},
        {"TrackId": "5", "DeviceId": "d", "EventType": "y", "EventTime": "2024-01-01T00:00:04Z", "Payload": "not json"},
        {"TrackId": "6", "DeviceId": "d", "EventType": "y", "EventTime": "2024-01-01T00:00:05Z", "Payload": [1, 2]},
    ]
    evs = [e for v in to_visitors(normalize(rows), account_id="1") for s in v["snapshots"] for e in s["events"]]
    assert [(e.get("revenue"), e.get("tags")) for e in evs] == [
        (1200, {"total": 12, "x": "a\nb", "u": "ö"}), (1250, {"total": 12.5}),
        (None, {"n": 1}), (None, {"n": "s"}), (None, None), (None, None)]
    assert type(evs[0]["tags"]["total"]) is int and type(evs[1]["tags"]["total"]) is float


def test_event_map_from_a_json_like_dict(events):
    emap = EventMap.of({"events": {"order": "7001"}, "unmapped": "skip",
                        "attributes": {"country": "CountryCode", "scope": ["9001", "Scope"]}})
    assert emap.unmapped == "skip" and emap.attributes["scope"] == ("9001", "Scope")
    vis = list(to_visitors(events, account_id="1", event_map=emap))
    assert [[e["entity_id"] for s in v["snapshots"] for e in s["events"]] for v in vis] == [["7001"]]


@pytest.mark.parametrize("n2", [2, "two"])  # vectorised path and per-row path
def test_pii_scrubbed_from_tags(n2):
    from psanalytics.schema import normalize

    rows = [
        {"TrackId": "1", "DeviceId": "d", "EventType": "signup", "EventTime": "2024-01-01T00:00:00Z",
         "Payload": {"email": "a@b.se", "note": "mail me at x.y@ex.com", "plan": "pro", "Phone": "123",
                     "n": 1}},
        {"TrackId": "2", "DeviceId": "d", "EventType": "signup", "EventTime": "2024-01-01T00:00:01Z",
         "Payload": {"plan": "free", "n": n2}},
    ]
    def tags(emap):
        return [e.get("tags") for v in to_visitors(normalize(rows), account_id="1", event_map=emap)
                for s in v["snapshots"] for e in s["events"]]

    assert tags(None) == [{"plan": "pro", "n": 1}, {"plan": "free", "n": n2}]
    assert tags(EventMap(scrub_pii=False))[0] == rows[0]["Payload"]
