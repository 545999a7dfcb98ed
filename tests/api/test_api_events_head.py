"""events(orderby=..., limit=N <= 9999) asks the server for just the first N rows (in-process
emulator): same rows as the full fetch + client sort + head, far fewer requests."""

from __future__ import annotations

from urllib.parse import parse_qs

import polars as pl
import pytest

from psanalytics import samples
from psanalytics._connect import connect
from psanalytics.api.profile_store import ProfileStore
from psanalytics.emulator import Emulator


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return samples.generate(12_000, seed=5)  # more than one 9,999-row window


@pytest.fixture
def emu(events) -> Emulator:
    return Emulator(events)


def _store(emu: Emulator, **kw) -> ProfileStore:
    return connect(emu.url, emu.api_key, transport=emu.transport(), emulator=emu,
                   progress=False, **kw)


def _gets(emu: Emulator) -> list[dict[str, str]]:
    out = []
    for e in emu.state()["journal"]:
        if e["route"] == "trackevents":
            out.append({k: v[0] for k, v in parse_qs(e["query"]).items()})
    return out


def _reference(events: pl.DataFrame, keys: list[str], desc: list[bool], n: int) -> pl.DataFrame:
    # What a full fetch returns (time order), sorted stably on the keys, first n rows.
    base = events.sort(["EventTime", "TrackId"])
    return base.sort(keys, descending=desc, nulls_last=True, maintain_order=True).head(n)


@pytest.mark.parametrize(
    ("orderby", "keys", "desc"),
    [
        ("EventType asc, EventTime desc", ["EventType", "EventTime"], [False, True]),
        ("CountryCode desc", ["CountryCode"], [True]),
        ("EventTime desc", ["EventTime"], [True]),
    ],
)
def test_ordered_head_is_one_request_and_equals_the_full_fetch(emu, events, orderby, keys, desc):
    s = _store(emu)
    full = s.events(orderby=orderby)  # the reference path: every event, sorted on the client
    assert full.height == events.height
    emu.reset()
    got = s.events(orderby=orderby, limit=250)
    assert got.equals(full.head(250))
    assert got.equals(_reference(events, keys, desc, 250))
    (req,) = _gets(emu)
    tie = ",".join(f"{c} asc" for c in ("EventTime", "TrackId") if c not in keys)
    terms = ",".join(f"{k} {'desc' if d else 'asc'}" for k, d in zip(keys, desc, strict=True))
    assert req == {"$orderby": f"{terms},{tie}" if tie else terms, "$skip": "0", "$top": "250"}


def test_ordered_head_over_one_page_takes_the_exact_fetch(emu, events):
    # $skip pages in another order could shift under a concurrent change: a head longer
    # than one page is cut from the exact (key-continued) fetch instead.
    s = _store(emu, page_size=1000)
    got = s.events(orderby="User.Email desc", limit=2500)
    assert got.equals(_reference(events, [pl.col("User").struct.field("Email")], [True], 2500))
    assert {q["$skip"] for q in _gets(emu)} == {"0"}
    assert {q["$orderby"] for q in _gets(emu)} == {"EventTime asc,TrackId asc", "EventTime desc,TrackId desc"}
    emu.reset()
    got = _store(emu).events(orderby="DeviceId asc", limit=9999)
    assert got.equals(_reference(events, ["DeviceId"], [False], 9999))
    assert [(q["$skip"], q["$top"]) for q in _gets(emu)] == [("0", "9999")]


def test_ordered_head_with_filter_and_range(emu, events):
    s = _store(emu)
    start, end = events["EventTime"][1000], events["EventTime"][9000]
    got = s.events("EventType eq 'home'", start=start, end=end, orderby="CountryCode asc",
                   limit=40)
    part = events.filter((pl.col("EventType") == "home") & (pl.col("EventTime") >= start)
                         & (pl.col("EventTime") < end))
    assert part.height > 40
    assert got.equals(_reference(part, ["CountryCode"], [False], 40))
    assert len(_gets(emu)) == 1
    # Fewer matches than the limit: all of them, still one request.
    emu.reset()
    got = s.events("EventType eq 'home'", start=start, end=end, orderby="CountryCode asc",
                   limit=9000)
    assert got.equals(_reference(part, ["CountryCode"], [False], 9000))
    assert got.height == part.height
    assert len(_gets(emu)) == 1


def test_keys_the_server_cannot_order_by_fall_back_to_the_full_fetch(emu, events):
    s = _store(emu)
    got = s.events(orderby="Payload desc", limit=5)
    assert got.equals(_reference(events, ["Payload"], [True], 5))
    assert all(q["$orderby"] in ("EventTime asc,TrackId asc", "EventTime desc,TrackId desc")
               for q in _gets(emu))
    assert len(_gets(emu)) > 1


def test_a_server_that_ignores_the_order_is_caught_and_the_full_fetch_used():
    from api_fakes import KEY, FakeStore, make_events

    # The fake orders by EventTime/TrackId only, whatever $orderby says.
    df = make_events([i * 1_000_000_000 for i in range(300)],
                     ["b" if i % 3 else "a" for i in range(300)])
    fake = FakeStore(df)
    s = ProfileStore("http://ps.test", KEY, transport=fake.transport(), progress=False)
    got = s.events(orderby="EventType asc", limit=7)
    assert got.equals(_reference(df, ["EventType"], [False], 7))
    assert got.get_column("EventType").to_list() == ["a"] * 7
    first = fake.gets()[0].url.params
    assert (first["$orderby"], first["$top"]) == ("EventType asc,EventTime asc,TrackId asc", "7")
    assert len(fake.gets()) > 1  # then the full fetch


def test_orderby_text_is_read_by_the_one_odata_parser(emu, events):
    from psanalytics.query.odata import ODataError

    s = _store(emu)
    with pytest.raises(ODataError) as ei:
        s.events(orderby="EventType, TrackId up", limit=5)
    assert str(ei.value) == (
        "invalid $orderby at position 12: expected 'Property [asc|desc]', got 'TrackId up'\n"
        "  EventType, TrackId up\n"
        "             ^"
    )
    assert _gets(emu) == []  # refused before anything was sent
    # names in any case come back canonical, as the emulator reads them
    got = s.events(orderby="eventtype DESC, user.email", limit=3)
    ref = events.sort(["EventTime", "TrackId"]).sort(
        [pl.col("EventType"), pl.col("User").struct.field("Email")], descending=[True, False],
        maintain_order=True, nulls_last=True).head(3)
    assert got.equals(ref)
    assert _gets(emu)[-1]["$orderby"] == "EventType desc,User.Email asc,EventTime asc,TrackId asc"
