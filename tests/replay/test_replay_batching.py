from __future__ import annotations

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psanalytics.replay import (
    BatchingError,
    Quarantined,
    body_prefix,
    encode_visitors,
    event_api_batches,
    tracking_batches,
    tracking_records,
)
from psanalytics.samples import generate
from psanalytics.schema import normalize


@pytest.fixture(scope="module")
def sample() -> pl.DataFrame:
    return generate(3000, seed=5)


def test_batches_respect_size_and_count_and_keep_visitors_whole(sample):
    vis = encode_visitors(sample, sessions="SessionId")
    prefix = body_prefix(account_id="1")
    cap = 20_000
    q: list[Quarantined] = []
    batches = list(event_api_batches(vis, prefix, max_visitors=7, max_bytes=cap, quarantine=q))
    for b in batches:
        assert len(b.body) <= cap
        assert b.visitors <= 7
        body = orjson.loads(b.body)
        assert len(body["visitors"]) == b.visitors
        assert sum(len(s["events"]) for v in body["visitors"] for s in v["snapshots"]) == b.events
    # every visitor is in exactly one batch, whole, unless quarantined
    sent = [v for b in batches for v in orjson.loads(b.body)["visitors"]]
    big = vis.filter(pl.col("nbytes") + len(prefix) + 2 > cap)
    assert [x.visitor_id for x in q] == big.get_column("visitor_id").to_list()
    assert len(sent) + len(q) == vis.height
    assert sorted(orjson.dumps(v).decode() for v in sent) == sorted(
        vis.filter(pl.col("nbytes") + len(prefix) + 2 <= cap).get_column("json").to_list())
    # greedy: a batch closed for size could not have taken the next visitor
    for b, nxt in zip(batches, batches[1:], strict=False):
        if b.visitors < 7:
            assert len(b.body) + 1 + len(nxt.parts[0].encode()) > cap
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert len({b.id for b in batches}) == len(batches)


def test_oversized_visitor_is_quarantined_with_offsets(sample):
    vis = encode_visitors(sample)
    prefix = body_prefix(account_id="1")
    biggest = vis.sort("nbytes", descending=True).row(0, named=True)
    q: list[Quarantined] = []
    batches = list(event_api_batches(vis, prefix, max_bytes=biggest["nbytes"] + len(prefix) + 1, quarantine=q))
    assert [(x.visitor_id, x.events, x.offsets) for x in q] == [
        (biggest["visitor_id"], biggest["events"], biggest["offsets"])]
    assert sum(b.events for b in batches) == sample.height - biggest["events"]


def test_split_halves(sample):
    vis = encode_visitors(sample).head(5)
    (b,) = list(event_api_batches(vis, body_prefix(account_id="1")))
    left, right = b.split()
    assert (left.visitors, right.visitors) == (2, 3)
    assert left.events + right.events == b.events
    assert orjson.loads(left.body)["visitors"] + orjson.loads(right.body)["visitors"] == orjson.loads(b.body)["visitors"]
    one = list(event_api_batches(vis.head(1), body_prefix(account_id="1")))[0]
    with pytest.raises(BatchingError, match="one visitor"):
        one.split()


def test_span_closes_batches(sample):
    vis = encode_visitors(sample, sessions="SessionId")
    batches = list(event_api_batches(vis, body_prefix(account_id="1"), max_span_ms=3_600_000))
    for b in batches:
        assert max(b.part_first_ms) - b.part_first_ms[0] <= 3_600_000


def test_tracking_batches(sample):
    recs = tracking_records(sample.head(450), truncate_ips=True)
    first = orjson.loads(recs.get_column("json")[0])
    # One Tracking encoder (wire.tracking): trackId and sessionId travel, empty fields and
    # an anonymous user are left out.
    assert list(first) == ["deviceId", "eventType", "value", "trackId", "sessionId", "eventTime",
                           "pageUri", "pageTitle", "scope", "remoteAddress", "payload"]
    assert first["remoteAddress"].endswith(".0") or first["remoteAddress"].endswith("::")
    q: list[Quarantined] = []
    batches = list(tracking_batches(recs, quarantine=q))
    assert [b.events for b in batches] == [100, 100, 100, 100, 50]
    assert all(len(b.body) <= 256 * 1024 for b in batches)
    small = list(tracking_batches(recs, max_bytes=4_000, quarantine=q))
    assert all(len(b.body) <= 4_000 for b in small)
    assert sum(b.events for b in small) + len(q) == 450
    with pytest.raises(BatchingError, match="max_events must be 1..100"):
        list(tracking_batches(recs, max_events=101))


def test_tracking_records_are_the_bodies_track_sends(events):
    from psanalytics.wire.tracking import tracking_bodies

    shuffled = events.with_columns(
        pl.struct(pl.lit("a@b.c").alias("Email"), pl.lit("").alias("Name"),
                  pl.lit('{"Market":"SE"}').alias("Info")).alias("User")).reverse()
    recs = tracking_records(shuffled)
    assert recs.get_column("offset").to_list() == [5, 4, 3, 2, 1, 0]  # time order
    got = [orjson.loads(t) for t in recs.get_column("json").to_list()]
    assert got == tracking_bodies(shuffled.sort("EventTime"))
    assert got[0] == {
        "deviceId": "dev-a", "eventType": "home", "value": "Visited the start page.", "trackId": "t-1",
        "sessionId": "s-a1", "eventTime": "2024-03-04T10:00:00.0000000Z", "remoteAddress": "94.27.91.168",
        "user": {"email": "a@b.c", "name": "", "info": {"Market": "SE"}},
        "payload": {"name": "Start page", "contentLink": "5", "epi": {"language": "sv"}},
    }
    # no TrackId: no trackId key (the service keeps ""); no Payload: no payload key
    assert "trackId" not in got[4] and got[4]["payload"]["keyword"] == "tents"
    assert "payload" not in got[5] and got[5]["trackId"] == "t-6"
    assert recs.get_column("nbytes").to_list() == [len(t.encode()) for t in recs.get_column("json")]


def test_tracking_bodies_keep_a_payload_that_is_not_json(events):
    from psanalytics.wire.tracking import tracking_json

    odd = events.head(3).with_columns(pl.Series("Payload", ["plain text", "42", '{"a": [1]}']))
    assert [orjson.loads(t)["payload"] for t in tracking_json(odd)] == ["plain text", 42, {"a": [1]}]


def test_chunks_partition_visitors_whole_and_stable(sample):
    from psanalytics.replay.mapping import encode_visitor_chunks

    whole = encode_visitors(sample, sessions="SessionId")
    n, parts = encode_visitor_chunks(sample, chunk_events=700, sessions="SessionId")
    parts = list(parts)
    assert n == sample.height and len(parts) == 5
    joined = pl.concat(parts)
    key = ["visitor_id", "session_id"]
    assert joined.sort(key).equals(whole.sort(key))
    n2, again = encode_visitor_chunks(sample, chunk_events=700, sessions="SessionId")
    assert [p.get_column("json").to_list() for p in again] == [p.get_column("json").to_list() for p in parts]
    # each part is ordered by first event
    assert all(p.get_column("first_ms").is_sorted() for p in parts)
    _, sampled = encode_visitor_chunks(sample, chunk_events=700, sample=0.5)
    got = pl.concat(list(sampled))
    assert 0 < got.height < whole.get_column("visitor_id").n_unique()




@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=0, max_size=60),
    max_visitors=st.integers(min_value=1, max_value=10),
    max_bytes=st.integers(min_value=200, max_value=1500),
)
def test_batching_properties(sizes, max_visitors, max_bytes):
    """Every visitor lands whole in exactly one batch or in quarantine; no body passes
    max_bytes or max_visitors; order is kept."""
    texts = [orjson.dumps({"visitor_id": f"v{i}", "pad": "x" * n}).decode() for i, n in enumerate(sizes)]
    vis = pl.DataFrame(
        {
            "visitor_id": [f"v{i}" for i in range(len(sizes))],
            "session_id": pl.Series([None] * len(sizes), dtype=pl.String),
            "json": pl.Series(texts, dtype=pl.String),
            "nbytes": pl.Series([len(t) for t in texts], dtype=pl.Int64),
            "events": pl.Series([1] * len(sizes), dtype=pl.Int64),
            "first_ms": pl.Series(list(range(len(sizes))), dtype=pl.Int64),
            "last_ms": pl.Series(list(range(len(sizes))), dtype=pl.Int64),
            "offsets": pl.Series([[i] for i in range(len(sizes))], dtype=pl.List(pl.Int64)),
        }
    )
    prefix = body_prefix(account_id="1", client_version="0")
    q: list[Quarantined] = []
    batches = list(event_api_batches(vis, prefix, max_visitors=max_visitors, max_bytes=max_bytes, quarantine=q))
    seen = []
    for b in batches:
        assert len(b.body) <= max_bytes and 1 <= b.visitors <= max_visitors
        seen += [v["visitor_id"] for v in orjson.loads(b.body)["visitors"]]
    too_big = [f"v{i}" for i, t in enumerate(texts) if len(prefix) + 2 + len(t) > max_bytes]
    assert [x.visitor_id for x in q] == too_big
    assert seen == [f"v{i}" for i in range(len(sizes)) if f"v{i}" not in too_big]


_TEXT = st.lists(st.sampled_from(['a', 'é', '"', '\\', ',', ':', '{', '}', ' ', 'n', '\n', '\u2028',
                                  ',"pageUri":null', '"trackId":null,']),
                max_size=4).map("".join)


def _reference_body(row: dict, seen: set) -> dict:
    """A Tracking body built field by field in plain Python (what the encoder must write);
    ``seen``: the (scope, first 64 characters) dedupe keys of earlier rows."""
    body = {"deviceId": row["DeviceId"], "eventType": row["EventType"], "value": row["Value"]}
    key = (row["Scope"] or "default", row["TrackId"][:64])
    if row["TrackId"] and key not in seen:
        body["trackId"] = row["TrackId"]
    seen.add(key)
    if row["SessionId"]:
        body["sessionId"] = row["SessionId"]
    body["eventTime"] = "2024-03-04T10:00:00.0000000Z"
    for src, dst in (("PageUri", "pageUri"), ("PageTitle", "pageTitle"), ("Scope", "scope"),
                     ("RemoteAddress", "remoteAddress")):
        if row[src]:
            body[dst] = row[src]
    user = row["User"]
    if user["Email"] or user["Name"] or user["Info"]:
        body["user"] = {"email": user["Email"], "name": user["Name"]}
        if user["Info"]:
            body["user"]["info"] = orjson.loads(user["Info"])
    if row["Payload"] is not None:
        body["payload"] = orjson.loads(row["Payload"])
    return body


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "TrackId": st.sampled_from(["", "t", "t2", "t" * 64 + "x", "t" * 64 + "y"]), "DeviceId": _TEXT, "EventType": _TEXT, "Value": _TEXT, "SessionId": _TEXT,
    "PageUri": _TEXT, "PageTitle": _TEXT, "Scope": st.sampled_from(["", "default", "b2b"]),
    "RemoteAddress": _TEXT,
    "User": st.fixed_dictionaries({"Email": _TEXT, "Name": _TEXT,
                                   "Info": st.one_of(st.none(), st.dictionaries(_TEXT, _TEXT, max_size=2))}),
    "Payload": st.one_of(st.none(), st.dictionaries(_TEXT, _TEXT, max_size=2)),
}), min_size=1, max_size=5))
def test_tracking_json_is_exact_for_any_text(rows):
    """Quotes, backslashes, line separators and text that looks like a left-out key
    (',"pageUri":null') inside values: each body decodes to exactly the fields it should;
    a TrackId repeating an earlier one (same scope, "" = default, first 64 characters) is
    left out."""
    from psanalytics.wire.tracking import tracking_json

    for r in rows:
        r["EventTime"] = "2024-03-04T10:00:00Z"
    frame = normalize(rows)
    got = [orjson.loads(t) for t in tracking_json(frame)]
    seen: set = set()
    assert got == [_reference_body(r, seen) for r in frame.to_dicts()]
