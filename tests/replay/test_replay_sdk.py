"""Our bodies have the same structure (keys and value types) as the official SDK's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from optimizely import entities, logger
from optimizely.event import payload, user_event
from optimizely.event.event_factory import EventFactory

from psanalytics.replay import body_prefix, encode_visitors
from psanalytics.schema import normalize


def shape(obj: Any) -> Any:
    """Keys and JSON types, recursively; a list's shape is the set of its items' shapes."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        shapes = []
        for item in obj:
            s = shape(item)
            if s not in shapes:
                shapes.append(s)
        return ["list", *sorted(shapes, key=repr)]
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, int):
        return "int"
    if isinstance(obj, float):
        return "number"
    if isinstance(obj, str):
        return "str"
    return type(obj).__name__


CTX = user_event.EventContext("123", "456", "7", True, "US")
ATTRS = [payload.VisitorAttribute("country", "country", "custom", "SE")]


def sdk_body(*events: user_event.UserEvent) -> dict[str, Any]:
    le = EventFactory.create_log_event(list(events), logger.NoOpLogger())
    assert le is not None
    # the SDK's own JSON encoding, as its dispatcher sends it
    return orjson.loads(orjson.dumps(le.params))


def ours(rows: list[dict[str, Any]], event_map: dict[str, Any]) -> dict[str, Any]:
    vis = encode_visitors(normalize(rows), event_map=event_map)
    prefix = body_prefix(account_id="123", project_id="456", revision="7")
    return orjson.loads(prefix + ",".join(vis.get_column("json")).encode() + b"]}")


def test_top_level_and_conversion_structure_match_sdk():
    conv = user_event.ConversionEvent(
        CTX, entities.Event(id="7001", key="order", experimentIds=[]), "dev-a", ATTRS,
        {"orderId": "PO-1", "currency": "EUR", "total": 611.85},
    )
    sdk = sdk_body(conv)
    mine = ours(
        [{"TrackId": "t-1", "DeviceId": "dev-a", "EventType": "order", "EventTime": "2024-03-04T10:00:00Z",
          "CountryCode": "SE", "Payload": {"orderId": "PO-1", "currency": "EUR", "total": 611.85}}],
        {"order": {"entity_id": "7001", "key": "order", "revenue": "total"}},
    )
    # the SDK only sends revenue when the tags carry one; ours always does for orders
    sdk["visitors"][0]["snapshots"][0]["events"][0]["revenue"] = 61185
    assert shape(mine) == shape(sdk)
    assert set(mine) == set(sdk)
    ev = mine["visitors"][0]["snapshots"][0]["events"][0]
    assert ev["revenue"] == 61185 and ev["tags"] == {"orderId": "PO-1", "currency": "EUR", "total": 611.85}
    assert mine["visitors"][0]["attributes"] == sdk["visitors"][0]["attributes"]


def test_impression_structure_matches_sdk():
    exp = entities.Experiment(id="200", key="exp", status="Running", audienceIds=[], variations=[],
                              forcedVariations={}, trafficAllocation=[], layerId="100")
    imp = user_event.ImpressionEvent(CTX, "dev-b", exp, ATTRS, entities.Variation(id="300", key="var_a"),
                                     "hero", "exp", "experiment", True)
    sdk = sdk_body(imp)
    mine = ours(
        [{"TrackId": "t-4", "DeviceId": "dev-b", "EventType": "epiHeroBlockClick",
          "EventTime": "2024-03-04T10:01:00Z", "CountryCode": "SE", "Payload": {"target": "/sale"}}],
        {"epiHeroBlockClick": {"decision": {
            "campaign_id": "100", "experiment_id": "200", "variation_id": "300",
            "metadata": {"flag_key": "hero", "rule_key": "exp", "variation_key": "var_a"}}}},
    )
    assert shape(mine) == shape(sdk)
    s_sdk, s_mine = sdk["visitors"][0]["snapshots"][0], mine["visitors"][0]["snapshots"][0]
    assert s_mine["decisions"] == s_sdk["decisions"]
    strip = lambda e: {k: v for k, v in e.items() if k not in ("uuid", "timestamp")}  # noqa: E731
    assert [strip(e) for e in s_mine["events"]] == [strip(e) for e in s_sdk["events"]]


@pytest.mark.parametrize("n", [1, 3])
def test_sdk_payload_classes_rebuild_our_visitors(n):
    """Feed our JSON through the SDK's payload classes; their serialisation equals ours."""
    rows = [{"TrackId": f"t-{i}", "DeviceId": "dev-a", "EventType": "order",
             "EventTime": f"2024-03-04T10:00:0{i}Z", "CountryCode": "SE",
             "Payload": {"orderId": f"PO-{i}", "total": 10.5 + i}} for i in range(n)]
    mine = ours(rows, {"order": {"entity_id": "7001", "revenue": "total"}})
    vis = mine["visitors"][0]
    snaps = [payload.Snapshot([payload.SnapshotEvent(**e) for e in s["events"]]) for s in vis["snapshots"]]
    attrs = [payload.VisitorAttribute(a["entity_id"], a["key"], a["type"], a["value"]) for a in vis["attributes"]]
    batch = payload.EventBatch(mine["account_id"], mine["project_id"], mine["revision"], mine["client_name"],
                               mine["client_version"], mine["anonymize_ip"], mine["enrich_decisions"],
                               [payload.Visitor(snaps, attrs, vis["visitor_id"])])
    assert batch.get_event_params() == mine
