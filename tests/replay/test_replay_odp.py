"""Profile Store events -> ODP: mapping, batching, the ODP sink, reconciliation, CLI."""

from __future__ import annotations

import uuid

import orjson
import polars as pl
import pytest
from optimizely.odp.odp_event import OdpEvent

from psanalytics import __version__
from psanalytics.api.http import RetryPolicy
from psanalytics.api.odp import OdpApi
from psanalytics.emulator import serve
from psanalytics.replay import (
    OdpMap,
    Replayer,
    ReplayError,
    differences,
    encode_odp_events,
    encode_odp_profiles,
    mapping_table,
    odp_batches,
    replay,
    to_odp_events,
)
from psanalytics.replay.mapping import MappingError
from psanalytics.replay.odp import ODP_NAMESPACE, field_name
from psanalytics.replay.odp_payload import _flat_py
from psanalytics.samples import generate
from psanalytics.schema import empty_frame

KEY = "odp-key-1234abcd"
SRC = f'"data_source_type":"psanalytics","data_source":"psanalytics","data_source_version":"{__version__}"'


def test_order_event_exact_json(events):
    got = encode_odp_events(events).filter(pl.col("EventType") == "order").get_column("json").item()
    iid = uuid.uuid5(ODP_NAMESPACE, "t-3")
    assert got == (
        '{"type":"order","action":"purchase","identifiers":{"vuid":"dev-a","email":"Anna@Example.com"},'
        f'"data":{{"ts":1709546430,"idempotence_id":"{iid}",{SRC},'
        '"currency":"EUR","order_id":"PO-1","total":611.85,"ps_event_type":"order",'
        '"ps_value":"Placed order PO-1","ps_country":"SE","ps_order_id":"PO-1","ps_total":611.85,"ps_currency":"EUR"}}'
    )


def test_every_event_mapped_in_time_order_with_types_and_flattened_payload(events):
    out = to_odp_events(events)
    assert [(e["type"], e.get("action")) for e in out] == [
        ("pageview", None), ("product", "detail"), ("order", "purchase"), ("epi_hero_block_click", None),
        ("search", None), ("pageview", None)]
    home = out[0]["data"]
    assert {k: v for k, v in home.items() if k.startswith("ps_")} == {
        "ps_event_type": "home", "ps_value": "Visited the start page.", "ps_country": "SE",
        "ps_name": "Start page", "ps_content_link": "5", "ps_epi_language": "sv"}
    assert out[1]["data"]["product_id"] == "P-1" and out[1]["data"]["ps_product_price"] == 8.95
    # a null Payload field is left out, booleans and numbers keep their JSON type
    assert out[4]["data"]["search_term"] == "tents"
    assert (out[4]["data"]["ps_hits"], out[4]["data"]["ps_exact"]) == (28, True)
    assert "ps_none" not in out[4]["data"]
    # an event without TrackId gets the uuid5 of its content, stable across runs
    assert out[4]["data"]["idempotence_id"] == to_odp_events(events)[4]["data"]["idempotence_id"]
    assert out[0]["data"]["ts"] == 1709546400 and out[5]["data"]["ts"] == 1709625600


def test_same_keys_as_the_official_sdk_event(events):
    sdk = OdpEvent("pageview", "", {"vuid": "dev-a"}, {"page": "/"}).__dict__
    ours = to_odp_events(events)[0]
    assert set(ours) <= set(sdk) and {"type", "identifiers", "data"} <= set(ours)
    assert {"idempotence_id", "data_source_type", "data_source", "data_source_version"} <= set(ours["data"])
    assert set(sdk["data"]) - {"page"} == {"idempotence_id", "data_source_type", "data_source", "data_source_version"}


def test_field_name_rule():
    assert field_name("epi", "contentGuid") == "ps_epi_content_guid"
    assert field_name("orderId") == "ps_order_id"
    assert field_name("HTTPStatus") == "ps_http_status"
    assert field_name("a-b c") == "ps_a_b_c"


def test_columnar_payload_fields_equal_the_per_row_rule():
    ev = generate(4000, seed=11)
    recs = encode_odp_events(ev)
    by_offset = dict(zip(recs.get_column("offset").to_list(), recs.get_column("json").to_list(), strict=True))
    for off, payload in enumerate(ev.get_column("Payload").to_list()):
        data = orjson.loads(by_offset[off])["data"]
        got = {k: v for k, v in data.items() if k.startswith("ps_") and k not in (
            "ps_event_type", "ps_value", "ps_country", "ps_city", "ps_scope")}
        flat = _flat_py(payload, True)
        assert got == (orjson.loads("{" + flat + "}") if flat else {}), off


def test_a_key_only_rare_payloads_have_is_not_dropped():
    # The columnar path infers each type's schema on a sample; a key outside it (here in
    # one payload of 5,000, away from the sample) must still be sent.
    from psanalytics.replay.odp_payload import _payload_fields

    rows = [f'{{"product":{{"refCode":"P-{i}","price":{i}.5}}}}' for i in range(5000)]
    rows[2501] = '{"product":{"refCode":"P-x","price":1.5,"rare":"yes"}}'
    got = _payload_fields(pl.DataFrame({"EventType": ["product"] * 5000, "Payload": rows}), True)
    assert got[2501] == '"ps_product_ref_code":"P-x","ps_product_price":1.5,"ps_product_rare":"yes"'
    assert got[7] == '"ps_product_ref_code":"P-7","ps_product_price":7.5'


def test_payload_fields_are_per_event_type_and_payload_pair_and_a_null_payload_keeps_its_type():
    # The encoder computes standard and Payload fields once per distinct (EventType,
    # Payload) pair: the same text under two types gives each type's own fields, and
    # events with no Payload still carry ps_event_type (a null is a pair of its own).
    same = '{"product":{"refCode":"P-9"}}'
    ev = pl.DataFrame({
        "TrackId": ["a", "b", "c", "d", "e"], "DeviceId": ["d1"] * 5,
        "EventType": ["product", "wishlist", "epiPageView", "product", "epiPageView"],
        "EventTime": [f"2024-03-04T10:00:0{i}Z" for i in range(5)],
        "Payload": [same, same, same, None, None]})
    got = [orjson.loads(t)["data"] for t in encode_odp_events(ev).get_column("json")]
    fields = [{k: v for k, v in d.items() if k not in ("ts", "idempotence_id") and not k.startswith("data_")}
              for d in got]
    assert fields == [
        {"product_id": "P-9", "ps_event_type": "product", "ps_product_ref_code": "P-9"},
        {"product_id": "P-9", "ps_event_type": "wishlist", "ps_product_ref_code": "P-9"},
        {"ps_event_type": "epiPageView", "ps_product_ref_code": "P-9"},
        {"ps_event_type": "product"},
        {"ps_event_type": "epiPageView"},
    ]


def test_dry_run_batch_ids_are_seq_and_sha1_of_the_body(tmp_path):
    # Ids are computed when first read (a dry run never needs them); a checkpoint from
    # a live run must still name the same batches.
    import hashlib

    seen = []
    Replayer("odp", dry_run=tmp_path / "b.jsonl", progress=False, max_visitors=100,
             on_batch=lambda b, _: seen.append((b.seq, b.id, b.body))).run(generate(450, seed=2))
    assert [s for s, _, _ in seen] == [0, 1, 2, 3, 4]
    assert [i for _, i, _ in seen] == [f"{s:07d}-{hashlib.sha1(body).hexdigest()[:16]}" for s, _, body in seen]
    assert (tmp_path / "b.jsonl").read_bytes() == b"".join(body + b"\n" for _, _, body in seen)


def test_an_events_text_does_not_depend_on_the_events_around_it():
    # Text is made once per distinct value and looked up, unless a column has too many
    # distinct values for a table to pay (then it is built per row): both give the same
    # text, and nbytes is each text's length in bytes.
    ev = generate(9000, seed=4).with_row_index("i").with_columns(
        pl.format("dev-{}", "i").alias("DeviceId"),
        pl.format("https://shop.test/p/{}?q=\"x\"", "i").alias("PageUri"),
        pl.col("User").struct.with_fields(pl.format("Ü{}@example.com", "i").alias("Email")),
    ).with_columns(  # every 7th event a campaign mail event: its DeviceId is the address
        pl.when(pl.col("i") % 7 == 0).then(pl.lit("epiCampaignOpen")).otherwise(pl.col("EventType")).alias("EventType"),
        pl.when(pl.col("i") % 7 == 0).then(pl.format("r{}@example.com", "i")).otherwise(pl.col("DeviceId"))
        .alias("DeviceId"),
    ).drop("i")
    whole = encode_odp_events(ev)
    assert whole.select((pl.col("json").str.len_bytes() == pl.col("nbytes")).all()).item()
    head = encode_odp_events(ev.head(300))
    got = whole.filter(pl.col("offset") < 300).sort("offset").get_column("json").to_list()
    assert got == head.sort("offset").get_column("json").to_list()
    mail = orjson.loads(whole.filter(pl.col("offset") == 7).get_column("json").item())
    assert mail["identifiers"] == {"email": "r7@example.com"}
    other = orjson.loads(whole.filter(pl.col("offset") == 8).get_column("json").item())
    assert other["identifiers"] == {"vuid": "dev-8", "email": "Ü8@example.com"}
    assert other["data"]["page"] == 'https://shop.test/p/8?q="x"'


def test_the_replayer_builds_the_same_bodies_a_chunk_at_a_time(tmp_path):
    # The replayer batches records without their json column and builds each chunk of
    # bodies' texts while batching; the bodies are those of the encoded texts, and a
    # batch split for a refused event gets its texts the same way.
    ev = generate(5000, seed=6)
    want = [b.body for b in odp_batches(encode_odp_events(ev), max_objects=100)]
    rep = Replayer("odp", dry_run=tmp_path / "d.jsonl", progress=False, max_visitors=100)
    batches, totals = rep.plan(ev)
    got = list(batches)
    assert totals["events"] == 5000 and [b.body for b in got] == want
    assert (tmp_path / "d.jsonl").exists() is False
    a, b = got[31].split()
    assert b"[" + b",".join(p.encode() for p in a.parts + b.parts) + b"]" == want[31]
    assert (a.rows, b.rows) == ((3100, 3150), (3150, 3200))


def test_campaign_mail_events_identify_by_email_and_pii_is_scrubbed():
    ev = pl.DataFrame({"TrackId": ["m1"], "DeviceId": ["reader@example.com"], "EventType": ["epiCampaignOpen"],
                       "EventTime": ["2024-03-04T10:00:00Z"],
                       "Payload": ['{"epi":{"campaign":{"mailingId":"77"}},"email":"x@y.se","note":"to a@b.se"}']})
    (e,) = to_odp_events(ev)
    assert (e["type"], e["action"], e["identifiers"]) == ("email", "open", {"email": "reader@example.com"})
    assert e["data"]["campaign_id"] == "77" and e["data"]["ps_epi_campaign_mailing_id"] == "77"
    assert "ps_email" not in e["data"] and "ps_note" not in e["data"]


def test_odp_map_overrides_skip_and_unmapped(events):
    m = OdpMap(events={"epiHeroBlockClick": "promotion/click", "home": {"skip": True},
                       "order": {"type": "order", "action": "purchase", "fields": {"order_id": "orderId"}}})
    out = to_odp_events(events, odp_map=m)
    assert [(e["type"], e.get("action")) for e in out] == [
        ("product", "detail"), ("order", "purchase"), ("promotion", "click"), ("search", None)]
    assert "total" not in out[1]["data"] and out[1]["data"]["order_id"] == "PO-1"
    t = mapping_table(events, m)
    assert t.rows() == [("epiHeroBlockClick", 1, "promotion", "click", "map"),
                        ("epiSearch", 1, "search", "", "standard"), ("home", 2, None, None, "skip"),
                        ("order", 1, "order", "purchase", "map"), ("product", 1, "product", "detail", "standard")]
    unmapped: dict[str, int] = {}
    encode_odp_events(events, unmapped_out=unmapped)
    assert unmapped == {"epiHeroBlockClick": 1}
    assert [e["type"] for e in to_odp_events(events, odp_map=OdpMap(unmapped="skip"))].count("epi_hero_block_click") == 0
    with pytest.raises(MappingError, match="EventType 'epiHeroBlockClick' has no ODP mapping"):
        encode_odp_events(events, odp_map=OdpMap(unmapped="error"))
    with pytest.raises(MappingError, match="unknown keys"):
        encode_odp_events(events, odp_map={"home": {"typ": "x"}})


def test_profiles_from_user_email_name_and_devices(events):
    extra = events.tail(1).with_columns(pl.lit("dev-c").alias("DeviceId"),
                                        pl.struct(pl.lit("Anna@Example.com").alias("Email"),
                                                  pl.lit("Anna Maria Berg").alias("Name"),
                                                  pl.lit(None, pl.String).alias("Info")).alias("User"))
    profs = encode_odp_profiles(pl.concat([events, extra]))
    assert [orjson.loads(t) for t in profs.get_column("json")] == [
        {"attributes": {"email": "Anna@Example.com", "vuid": "dev-a", "first_name": "Anna",
                        "last_name": "Maria Berg", "ps_name": "Anna Maria Berg"}},
        {"attributes": {"email": "Anna@Example.com", "vuid": "dev-c", "first_name": "Anna",
                        "last_name": "Maria Berg", "ps_name": "Anna Maria Berg"}},
    ]


def test_batches_are_arrays_of_at_most_500_and_split_keeps_rows():
    recs = encode_odp_events(generate(1203, seed=3))
    bs = list(odp_batches(recs))
    assert [b.events for b in bs] == [500, 500, 203]
    assert [b.rows for b in bs] == [(0, 500), (500, 1000), (1000, 1203)]
    assert orjson.loads(bs[2].body) == [orjson.loads(t) for t in recs.get_column("json")[1000:]]
    a, b = bs[2].split()
    assert (a.rows, b.rows, a.events + b.events) == ((1000, 1101), (1101, 1203), 203)
    assert orjson.loads(a.body) + orjson.loads(b.body) == orjson.loads(bs[2].body)


def test_dry_run_bodies_are_what_a_live_run_posts(events, tmp_path):
    dry = tmp_path / "odp.jsonl"
    rep = Replayer("odp", dry_run=dry, progress=False).run(events)
    assert rep.events == 6 and rep.batches == 1
    (line,) = dry.read_bytes().splitlines()
    with serve(empty_frame(), odp_api_key=KEY) as srv:
        replay(events, srv.url, to="odp", api_key=KEY, progress=False)
        posted = srv.emulator.odp.events_frame()
    sent = orjson.loads(line)
    assert [(e["type"], e["identifiers"], e["data"]) for e in sent] == [
        (t, orjson.loads(i), orjson.loads(d)) for t, i, d in posted.select("type", "identifiers", "data").iter_rows()]


def test_killed_and_resumed_under_faults_every_event_accepted_once(tmp_path):
    """Issue 16's 'done' run, at 6,000 events (benchmarks/replay.py runs 50,000)."""
    ev = generate(6000, seed=16)
    ck = tmp_path / "odp.ckpt"
    faults = {"error_rate": 0.05, "error_statuses": [500, 503], "rate_limit_rate": 0.05, "retry_after": "0",
              "seed": 16, "routes": ["odp_events", "odp_profiles"]}
    fast = RetryPolicy.fast(max_attempts=12)
    seen = []

    def kill(batch, outcome):
        seen.append(batch.id)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with serve(empty_frame(), odp_api_key=KEY, faults=faults) as srv:
        with pytest.raises(KeyboardInterrupt):
            replay(ev, srv.url, to="odp", api_key=KEY, checkpoint=ck, retries=fast, max_visitors=250,
                   workers=3, progress=False, on_batch=kill)
        first = srv.emulator.odp.state(limit=0)["accepted"]
        assert 0 < first < 6000
        rep = replay(ev, srv.url, to="odp", api_key=KEY, checkpoint=ck, retries=fast, max_visitors=250,
                     workers=3, progress=False, profiles=True)
        assert rep.ok and rep.skipped >= 5
        table = rep.reconcile(srv)
        st = srv.emulator.odp.state(limit=0)
        ids = srv.emulator.odp.events_frame().get_column("idempotence_id")
        # every faulted request was answered 429/5xx and retried until accepted
        journal = srv.state(limit=None)["journal"]
    faulted = [j for j in journal if j["fault"] is not None]
    assert all(j["status"] in (429, 500, 503) for j in faulted)
    assert st["accepted"] == 6000 and ids.n_unique() == 6000
    assert set(ids.to_list()) == set(encode_odp_events(ev).get_column("idempotence_id").to_list())
    assert differences(table).height == 0
    assert table.select(pl.sum("read"), pl.sum("accepted"), pl.sum("pending")).row(0) == (6000, 6000, 0)
    assert rep.profiles == encode_odp_profiles(ev).height and st["profiles_updated"] == rep.profiles


def test_rejected_events_are_isolated_with_the_server_reason(tmp_path, events):
    good = to_odp_events(events)
    bad = {"type": "pageview", "identifiers": {}, "data": {"idempotence_id": "bad-1"}}
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_bytes(orjson.dumps([*good[:3], bad, *good[3:]]) + b"\n")
    with serve(empty_frame(), odp_api_key=KEY) as srv:
        rep = Replayer(OdpApi(srv.url, api_key=KEY), progress=False, rejected=tmp_path / "rej.jsonl").resend(bodies)
        assert srv.emulator.odp.state(limit=0)["accepted"] == 6
    assert (rep.rejected, rep.rejected_events, rep.events) == (1, 1, 6)
    (r,) = rep.rejections
    assert r.status == 400
    assert r.reason == ('invalid objects: [0] identifiers are required: an object with at least one '
                        'identifier, e.g. {"vuid": "..."}')
    (line,) = (tmp_path / "rej.jsonl").read_bytes().splitlines()
    assert orjson.loads(line)["body"] == [bad]


def test_wrong_key_stops_the_run_and_records_nothing(events, tmp_path):
    ck = tmp_path / "c.ckpt"
    with serve(empty_frame(), odp_api_key=KEY) as srv:
        with pytest.raises(ReplayError, match="answered HTTP 403") as ei:
            replay(events, srv.url, to="odp", api_key="not-the-key-9f8e", checkpoint=ck, progress=False)
    assert "not-the-key-9f8e" not in str(ei.value)
    assert [orjson.loads(x) for x in ck.read_bytes().splitlines() if b'"batch"' in x] == []


def test_the_key_is_never_shown_and_the_callers_client_is_not_changed():
    api = OdpApi("http://127.0.0.1:9", api_key="secret-odp-key-77")
    assert "secret-odp-key-77" not in repr(api)
    before = api.policy
    rep = Replayer(api, retries=2, progress=False)
    assert api.policy is before and rep.sink.api.policy.max_attempts == 2
    assert "secret-odp-key-77" not in repr(rep.sink)


def test_profiles_are_capped_at_10_requests_per_second():
    t = [0.0]
    waits = []

    def sleep(s):
        waits.append(round(s, 6))
        t[0] += s

    with serve(empty_frame(), odp_api_key=KEY) as srv:
        api = OdpApi(srv.url, api_key=KEY, clock=lambda: t[0], sleep=sleep)
        for i in range(3):
            api.send_profiles([{"attributes": {"email": f"u{i}@example.com"}}])
        api.send_events([{"type": "pageview", "identifiers": {"vuid": "d"}}])
    assert waits == [0.1, 0.1]


def test_cli_to_odp_with_profiles_prints_the_reconciliation(tmp_path, events):
    from typer.testing import CliRunner

    from psanalytics.cli import app
    from psanalytics.exports import write_events

    src = tmp_path / "ev.ndjson"
    write_events(events, src)
    with serve(empty_frame(), odp_api_key=KEY) as srv:
        res = CliRunner().invoke(app, ["replay", str(src), "--to", "odp", "--url", srv.url, "--profiles",
                                       "--no-progress"], env={"PSANALYTICS_ODP_API_KEY": KEY})
        assert srv.emulator.odp.state(limit=0)["accepted"] == 6
    assert res.exit_code == 0, res.output
    assert "customer profiles 1 in 1 requests" in res.output
    assert "unmapped types sent as custom types: epiHeroBlockClick (1)" in res.output
    assert ("reconcile: 2 days x 5 event types: read 6, mapped 6 (skipped by map 0), sent 6, accepted 6, "
            "rejected 0, failed 0, pending 0\n  no differences") in res.output
    assert KEY not in res.output
    res = CliRunner().invoke(app, ["replay", str(src), "--to", "odp", "--url", "http://127.0.0.1:9"],
                             env={"PSANALYTICS_ODP_API_KEY": ""})
    assert res.exit_code == 2 and "PSANALYTICS_ODP_API_KEY" in res.output


def test_reconcile_needs_an_odp_run_and_a_known_destination(events, tmp_path, monkeypatch):
    from psanalytics.errors import ArgumentError

    monkeypatch.delenv("PSANALYTICS_ODP_API_KEY", raising=False)
    rep = Replayer("event-api", account_id="1", dry_run=tmp_path / "b.jsonl", progress=False).run(events)
    with pytest.raises(ArgumentError, match=r"reconcile\(\) needs a report of an ODP replay run"):
        rep.reconcile()
    odp = Replayer("odp", dry_run=tmp_path / "o.jsonl", progress=False).run(events)
    with pytest.raises(ArgumentError, match="destination must be an Emulator"):
        odp.reconcile(destination=42)
    # a frame exported from ODP (data as JSON text) is a destination too
    sent = to_odp_events(events)[:4]
    dest = pl.DataFrame({"data": [orjson.dumps(e["data"]).decode() for e in sent]})
    t = odp.reconcile(dest)
    assert t.select(pl.sum("mapped"), pl.sum("sent"), pl.sum("accepted"), pl.sum("difference")).row(0) == (6, 6, 4, 2)
    assert differences(t).select("event_type", "difference").rows() == [("epiSearch", 1), ("home", 1)]
    with pytest.raises(ArgumentError, match="OdpApi needs an API key"):
        OdpApi("http://127.0.0.1:9", api_key="")
