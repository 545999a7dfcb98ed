"""A store shaped like the real one comes back whole through events(), pages(), export().

30% of the events have no TrackId, some are identical pairs, users carry ``User.Info``,
every event has ``Headers``, some a field outside the documented ones, and 12,000 of them
fall in one minute. Served by ``serve(events=<NDJSON in API shape>)`` on a real socket,
each read returns the same multiset of events with every field intact.
"""

from __future__ import annotations

from collections import Counter

import orjson
import polars as pl
import pytest

from psanalytics import exports, samples, schema
from psanalytics._connect import connect
from psanalytics.emulator import serve

pytestmark = pytest.mark.http

KEY = "real-shape-key"


def _multiset(frame: pl.DataFrame) -> Counter[str]:
    return Counter(schema.api_json_lines(frame).to_list())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    frame = samples.real_shaped(samples.generate(1_000, burst=True, seed=7), seed=7)
    path = exports.write_events(frame, tmp_path_factory.mktemp("src") / "store.ndjson")
    return frame, path


def test_the_source_is_shaped_like_the_real_store(source):
    frame, path = source
    mail = frame.filter(pl.col("EventType").str.starts_with("epiCampaign"))
    assert set(mail["EventType"]) == {"epiCampaignMailingtouser", "epiCampaignOpen", "epiCampaignClick"}
    assert frame.height == 13_000 + mail.height + 20
    assert frame.filter(pl.col("EventTime").dt.truncate("1m") == pl.col("EventTime").dt.truncate("1m").mode().first()).height >= 12_000
    assert (frame["TrackId"] == "").sum() > 0.29 * frame.height
    assert frame.height - frame.n_unique() >= 20  # identical pairs (20 made, some generated)
    first = orjson.loads(path.read_text().splitlines()[0])
    assert first["Headers"] == {} and "Info" in first["User"] or first["User"]["Email"] == ""
    assert any(b'"Channel":"web"' in line for line in path.read_bytes().splitlines())


def test_events_pages_and_export_return_the_same_multiset_with_every_field(source, tmp_path):
    frame, path = source
    want = _multiset(frame)
    with serve(path, api_key=KEY) as srv:
        store = connect(srv.url, KEY, progress=False)
        got = store.events()
        assert _multiset(got) == want
        # Lossless: written back, each event has the keys and values it was served with.
        served = [orjson.loads(x) for x in path.read_bytes().splitlines()]
        assert Counter(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in schema.to_api_records(got)) == \
            Counter(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in served)
        assert _multiset(pl.concat(list(store.pages()))) == want
        report = store.export(tmp_path / "out")
        assert _multiset(report.read()) == want
        assert report.duplicates == frame.height - frame.n_unique()


def test_serve_real_shaped_over_a_socket():
    """serve(real_shaped=True) (the CLI's serve --real-shaped) serves samples.real_shaped()."""
    from urllib.parse import quote

    import httpx

    base = samples.generate(400, seed=3)
    want = samples.real_shaped(base)
    with serve(base, api_key=KEY, real_shaped=True) as srv, httpx.Client(
            base_url=srv.url, headers={"Authorization": f"epi-single {KEY}"}) as http:
        r = http.get("/api/v2.0/TrackEvents", params={"$top": "9999"})
        assert r.status_code == 200
        items = r.json()["items"]
        assert len(items) == want.height == 400 + 13 + 20  # 13 campaign events, 20 twins
        assert Counter(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in items) == Counter(
            orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in schema.to_api_records(want))
        assert sum(e["TrackId"] == "" for e in items) == 143
        assert all(e["Headers"] == {} for e in items)
        assert sum(e.get("Channel") == "web" for e in items) == 28
        # the visitor-group criterion's request: did this recipient open this mailing?
        assert Counter(e["EventType"] for e in items if e["DeviceId"] == e["User"]["Email"] != "") == {
            "epiCampaignMailingtouser": 8, "epiCampaignOpen": 4, "epiCampaignClick": 1}
        opened = next(e for e in items if e["EventType"] == "epiCampaignOpen")
        mailing = opened["Payload"]["epi"]["campaign"]["mailingId"]
        flt = (f"EventType eq epiCampaignOpen and DeviceId eq {opened['DeviceId']} and "
               f"Payload.epi.campaign.mailingId eq {mailing}")
        got = http.get("/api/v2.0/TrackEvents?$top=1&$filter=" + quote(flt)).json()
        assert [(e["DeviceId"], e["EventType"]) for e in got["items"]] == [(opened["DeviceId"], "epiCampaignOpen")]
