import datetime as dt
import gzip
import io
import ipaddress

import numpy as np
import orjson
import polars as pl
import pytest
import zstandard

from psanalytics import samples, schema


def test_deterministic_and_seed_dependent():
    a = samples.generate(3_000, seed=5, burst=True)
    b = samples.generate(3_000, seed=5, burst=True)
    c = samples.generate(3_000, seed=6, burst=True)
    assert a.equals(b)
    assert not a.get_column("TrackId").equals(c.get_column("TrackId"))


def test_shape_order_ids(small):
    assert small.schema == schema.EVENTS_SCHEMA
    assert small.height == 2_000
    assert small.get_column("EventTime").is_sorted()
    assert small.get_column("TrackId").n_unique() == 2_000
    assert small.get_column("TrackId").str.contains(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
    ).all()
    assert small.get_column("DeviceId").n_unique() == 100  # default: n_events // 20
    assert small.get_column("EventTime").null_count() == 0
    for c in schema.STRING_COLUMNS:
        assert small.get_column(c).null_count() == 0


def test_window_start_and_days():
    start = dt.datetime(2023, 6, 1, 12, tzinfo=dt.UTC)
    df = samples.generate(5_000, days=3, start=start, seed=1)
    t = df.get_column("EventTime")
    assert t.min() >= start and t.max() < start + dt.timedelta(days=3)
    naive = samples.generate(100, days=1, start=dt.datetime(2023, 6, 1), seed=1)
    assert naive.get_column("EventTime").min() >= dt.datetime(2023, 6, 1, tzinfo=dt.UTC)
    assert samples.generate(0).equals(schema.empty_frame())
    with pytest.raises(ValueError, match="days must be > 0"):
        samples.generate(10, days=0)
    assert samples.generate(10, n_devices=3, seed=2).get_column("DeviceId").n_unique() == 3


def test_times_are_100ns_multiples_and_ties_exist(medium):
    ns = medium.get_column("EventTime").dt.epoch("ns")
    assert (ns % 100 == 0).all()
    # exactly equal timestamps, and distinct events in the same millisecond
    assert medium.get_column("EventTime").is_duplicated().sum() > 100
    ms = ns // 1_000_000
    same_ms_distinct = medium.select(
        ((ms.diff() == 0) & (ns.diff() != 0)).sum()
    ).item()
    assert same_ms_distinct > 10


def test_burst_puts_more_than_10000_events_in_one_minute(medium):
    assert medium.height == 60_000 + samples.BURST_EVENTS
    per_minute = medium.group_by(pl.col("EventTime").dt.truncate("1m")).len()
    assert per_minute.get_column("len").max() > 10_000
    plain = samples.generate(60_000, seed=11)
    assert plain.group_by(pl.col("EventTime").dt.truncate("1m")).len().get_column("len").max() < 1_000


def test_zipf_skew_and_bots(medium):
    per_dev = medium.group_by("DeviceId").len().get_column("len").sort(descending=True)
    n_dev = per_dev.len()
    top1 = per_dev.head(max(1, n_dev // 100)).sum() / per_dev.sum()
    assert top1 > 0.10  # the top 1 % of devices hold more than a tenth of the events
    plain = samples.generate(60_000, seed=11).group_by("DeviceId").len().get_column("len")
    assert plain.median() <= 8
    # bot-like: the busiest device is active in every hour of the day and never logs in
    top = medium.filter(pl.col("DeviceId") == medium.group_by("DeviceId").len().sort(
        "len", descending=True).item(0, "DeviceId"))
    assert top.get_column("EventTime").dt.hour().n_unique() == 24
    assert (top.get_column("User").struct.field("Email") == "").all()


def test_people_devices_and_sessions(medium):
    users = medium.filter(pl.col("User").struct.field("Email") != "")
    assert users.height > 1_000
    per_user = users.group_by(pl.col("User").struct.field("Email")).agg(
        pl.col("DeviceId").n_unique().alias("devices")
    )
    assert per_user.get_column("devices").max() >= 2  # users on several devices
    # SessionId behaves like a 30-minute renewed cookie: never changes within 30 min
    by_dev = medium.sort(["DeviceId", "EventTime"]).with_columns(
        gap=pl.col("EventTime").diff().over("DeviceId"),
        changed=(pl.col("SessionId") != pl.col("SessionId").shift()).over("DeviceId"),
    )
    short = by_dev.filter(pl.col("gap") <= pl.duration(minutes=30))
    assert not short.get_column("changed").any()
    very_long = by_dev.filter(pl.col("gap") > pl.duration(hours=3))
    assert very_long.height > 0 and very_long.get_column("changed").all()


def test_addresses_match_countries(small):
    markets = {m.country: m for m in samples._world._MARKETS}
    for cc, ip in small.select("CountryCode", "RemoteAddress").unique().rows():
        addr = ipaddress.ip_address(ip)
        m = markets[cc]
        if addr.version == 4:
            first = int(ip.split(".")[0])
            assert first in m.v4 or first in samples._world._BOT_V4, (cc, ip)
        else:
            assert ip.startswith(m.v6 + ":") or ip.startswith(samples._world._BOT_V6 + ":"), (cc, ip)
    assert small.group_by("DeviceId").agg(pl.col("CountryCode").n_unique()).get_column(
        "CountryCode").max() == 1
    scopes = small.get_column("Scope").value_counts(normalize=True)
    assert dict(scopes.rows())["default"] > 0.8
    assert set(scopes.get_column("Scope")) <= {"default", "b2b", "outlet"}


def test_payloads_per_event_type(medium):
    counts = dict(medium.group_by("EventType").len().rows())
    assert set(counts) == set(samples._world._KIND_TYPES)
    assert counts["product"] > counts["basket"] > counts["checkout"] > counts["order"] > 0
    first = {et: orjson.loads(p) for et, p in medium.group_by("EventType", maintain_order=True)
             .agg(pl.col("Payload").first()).rows()}
    assert set(first["epiPageView"]["epi"]) == {"contentGuid", "language", "siteId", "ancestors"}
    assert set(first["product"]["product"]) == {"refCode", "name", "price", "currency"}
    assert {"refCode", "qty", "price"} == set(first["basket"]["lines"][0])
    assert {"keyword", "hits", "epi"} == set(first["epiSearch"])
    orders = medium.filter(pl.col("EventType") == "order")
    ids = [orjson.loads(p)["orderId"] for p in orders.get_column("Payload")]
    assert len(set(ids)) == len(ids)
    for p in orders.get_column("Payload").to_list():
        o = orjson.loads(p)
        assert o["total"] == pytest.approx(sum(li["qty"] * li["price"] for li in o["lines"]))
    assert medium.filter(pl.col("EventType") == "epiSearch").get_column("Value").str.starts_with(
        "Searched ").all()
    # block events show the page they were on
    blocks = medium.filter(pl.col("EventType").is_in(["epiVideoBlockView", "epiHeroBlockClick"]))
    assert (blocks.get_column("PageUri") != "").all()


def test_default_events_match_committed_files_exactly():
    committed = samples.default_sample_path()
    assert committed.is_file()
    df = samples.default_events()
    regenerated = samples.generate(
        samples.DEFAULT_N_EVENTS, days=samples.DEFAULT_DAYS, seed=samples.DEFAULT_SEED
    )
    assert df.equals(regenerated)
    assert df.height == 50_000
    # The content is exactly what the writer produces (the compressors are deterministic:
    # see test_writers_are_deterministic), so `psanalytics samples` reproduces the bytes.
    raw = committed.read_bytes()
    assert raw[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, mtime 0, -9
    lines = schema.api_json_lines(regenerated).str.join("\n").item() + "\n"
    assert gzip.decompress(raw) == lines.encode()
    page = committed.parent / "track-events.page.json.zst"
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(page.read_bytes())) as r:
        assert r.read() == schema.to_api_json(regenerated, envelope=True)
    size = sum(p.stat().st_size for p in committed.parent.iterdir())
    assert size < 10_000_000


def test_default_events_without_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(samples, "default_sample_path", lambda: tmp_path / "missing.ndjson.gz")
    samples._default_cached.cache_clear()
    try:
        df = samples.default_events()
    finally:
        samples._default_cached.cache_clear()
    assert df.equals(samples.default_events())


def test_guids_helper_is_vectorised_and_valid():
    rng = np.random.default_rng(0)
    g = samples._world._guids(rng, 1000)
    assert g.dtype == pl.String and g.n_unique() == 1000
    assert g.str.len_bytes().unique().to_list() == [36]


def test_diurnal_cycle_and_visit_gaps(medium):
    se = medium.filter(pl.col("CountryCode") == "SE")  # UTC+1, no bots in SE
    by_hour = dict(se.group_by(pl.col("EventTime").dt.hour()).len().rows())
    night = by_hour.get(2, 0) + by_hour.get(3, 0)  # 03-04 local
    evening = by_hour.get(18, 0) + by_hour.get(19, 0)  # 19-20 local
    assert night * 4 < evening
    gaps = (
        medium.sort(["DeviceId", "EventTime"])
        .select(pl.col("EventTime").diff().over("DeviceId").dt.total_seconds(fractional=True))
        .to_series()
        .drop_nulls()
    )
    in_visit = gaps.filter(gaps <= 1800)
    assert 5 <= in_visit.median() <= 120  # seconds to minutes inside a visit
    assert gaps.filter(gaps > 1800).median() > 3600  # hours to days between visits


def test_campaign_events_leave_every_other_event_as_it_was():
    plain = samples.generate(3_000, seed=5, burst=True)
    with_mail = samples.generate(3_000, seed=5, burst=True, campaigns=3)
    is_mail = pl.col("EventType").str.starts_with("epiCampaign")
    assert with_mail.filter(~is_mail).equals(plain)  # byte-identical: its own generator
    assert with_mail.schema == schema.EVENTS_SCHEMA
    assert with_mail.get_column("EventTime").is_sorted()
    assert with_mail.get_column("TrackId").n_unique() == with_mail.height
    mail = with_mail.filter(is_mail)
    assert mail.equals(samples.campaign_events(plain, seed=5, mailings=3))
    counts = dict(mail.group_by("EventType").len().iter_rows())
    assert counts == {"epiCampaignMailingtouser": 33, "epiCampaignOpen": 10, "epiCampaignClick": 4}


def test_campaign_events_as_the_campaign_integration_tracks_them():
    frame = samples.generate(3_000, seed=5)
    mail = samples.campaign_events(frame, seed=5, mailings=3)
    known = set(frame.get_column("User").struct.field("Email").unique()) - {""}
    assert set(mail.get_column("DeviceId")) <= known  # the recipient's e-mail is the device
    assert (mail.get_column("DeviceId") == mail.get_column("User").struct.field("Email")).all()
    ids = mail.select(pl.col("Payload").str.json_path_match("$.epi.campaign.mailingId")).to_series()
    assert ids.str.contains(r"^[1-9][0-9]{11}$").all() and ids.n_unique() == 3
    assert mail.get_column("EventTime").max() <= frame.get_column("EventTime").max()
    # every open follows its send, every click its open (same recipient, same mailing)
    first = mail.with_columns(ids.alias("m")).group_by("DeviceId", "m", "EventType").agg(
        pl.col("EventTime").min())
    wide = first.pivot("EventType", index=["DeviceId", "m"], values="EventTime")
    opened = wide.filter(pl.col("epiCampaignOpen").is_not_null())
    assert opened.height and (opened["epiCampaignOpen"] > opened["epiCampaignMailingtouser"]).all()
    clicked = wide.filter(pl.col("epiCampaignClick").is_not_null())
    assert clicked.height and (clicked["epiCampaignClick"] > clicked["epiCampaignOpen"]).all()
    click = mail.filter(pl.col("EventType") == "epiCampaignClick").row(0, named=True)
    assert click["PageUri"].endswith("?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale")
    assert click["RemoteAddress"] != "" and click["SessionId"] == ""
    send = mail.filter(pl.col("EventType") == "epiCampaignMailingtouser").row(0, named=True)
    assert (send["RemoteAddress"], send["PageUri"], send["Value"]) == ("", "", "Received mailing Spring sale")
    assert samples.campaign_events(frame, mailings=0).height == 0
    with pytest.raises(ValueError, match="open_rate must be between 0 and 1, got 1.5"):
        samples.campaign_events(frame, open_rate=1.5)
