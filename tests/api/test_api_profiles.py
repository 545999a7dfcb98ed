"""Reading Profile Store profiles (``GET api/v2.0/Profiles``): ``store.profiles()`` against
the emulator, exactly once past the 10,000-row window; the vendor's own example profile
read back field by field; real callers' filters (``DeviceIds eq <guid>``, unquoted
e-mails); clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest

from psanalytics.api.http import ApiError, RetryPolicy
from psanalytics.api.profile_store import ProfileStore
from psanalytics.emulator import Emulator
from psanalytics.samples import generate
from psanalytics.wire.profiles import (
    PROFILE_COLUMNS,
    ProfileFormatError,
    profiles_from_events,
    read_profiles,
)

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002, max_retry_after=1)

#: The vendor's example profile (Profile Store API, "Profile methods": GET
#: api/v1.0/profiles/{scope}/{id}), kept as the vendor printed it in tests/vendor/.
VENDOR = json.loads((Path(__file__).parents[1] / "vendor" / "profile-store-profile.json").read_text())


class Recorder(httpx.BaseTransport):
    """The emulator's in-process transport, remembering every request's query."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.params: list[httpx.QueryParams] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.params.append(request.url.params)
        return self.inner.handle_request(request)


def store_of(emu: Emulator, **kw) -> tuple[ProfileStore, Recorder]:
    rec = Recorder(emu.transport())
    return ProfileStore(emu.url, emu.api_key, transport=rec, policy=FAST, progress=False, **kw), rec


def many_profiles(n: int) -> list[dict]:
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        first = t0 + timedelta(seconds=i // 4)  # ties: four profiles per instant
        out.append({"ProfileId": f"p{i:06d}", "DeviceIds": [f"d{i:06d}"], "Name": f"N {i}",
                    "ProfileManager": None, "FirstSeen": first.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
                    "LastSeen": (first + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
                    "Visits": i % 7, "UpdateTime": "2024-04-01T00:00:00.0000000Z", "Scope": "default",
                    "Info": {"Email": f"u{i}@example.com"} if i % 3 == 0 else {},
                    "ContactInformation": ["Mailable"], "Payload": None})
    return out


def test_vendor_example_profile_read_back_field_by_field(tmp_path):
    path = tmp_path / "profiles.json"
    extra = dict(VENDOR, ProfileId="p2", SegmentIds=["s1"])  # a key outside the model: kept
    path.write_bytes(orjson.dumps({"items": [VENDOR, extra], "total": 2}))
    emu = Emulator(generate(200, n_devices=5, days=1, seed=3), profiles=path)
    store, _ = store_of(emu)
    got = store.profiles()
    assert got.columns == PROFILE_COLUMNS
    row = got.row(0, named=True)
    assert row["ProfileId"] == "6243d1c0-70dd-453e-9cc4-63c577cb25ad"
    assert row["DeviceIds"] == ["9f4447e4-9f00-4fa8-ad30-a1a971d4fbf6"]
    assert row["Name"] == "Nikki A Blomqvist" and row["ProfileManager"] is None
    assert row["FirstSeen"] == datetime(2017, 12, 1, 12, 34, 56, tzinfo=UTC)
    assert row["LastSeen"] == datetime(2018, 5, 19, 11, 33, 12, tzinfo=UTC)
    assert row["UpdateTime"] == datetime(2019, 3, 6, 21, 29, 38, 408827, tzinfo=UTC)
    assert got.get_column("UpdateTime").dt.epoch("ns")[0] % 1_000_000_000 == 408_827_500
    assert row["Visits"] == 1150 and row["Scope"] == "DefaultScope"
    assert orjson.loads(row["Info"]) == VENDOR["Info"]
    assert row["ContactInformation"] == ["Mailable", "Anonymous"]
    assert orjson.loads(row["Payload"]) == {"customField": 14, "otherCustomField": "apple"}
    assert row["Extra"] is None
    assert got.row(1, named=True)["Extra"] == '{"SegmentIds":["s1"]}'
    # Real callers' filters: DeviceIds eq <guid>, an unquoted e-mail on Info.Email.
    assert store.profiles("DeviceIds eq 9f4447e4-9f00-4fa8-ad30-a1a971d4fbf6").height == 2
    assert store.profiles("DeviceIds eq 9f4447e4-9f00-4fa8-ad30-a1a971d4fbf7").height == 0
    assert store.profiles("Info.Email eq Nikki.Blomqvist@example.com and ProfileId ne p2") \
        .get_column("ProfileId").to_list() == [VENDOR["ProfileId"]]
    assert store.profiles("Visits gt 1149 and FirstSeen lt 2018-01-01").height == 2


def test_past_the_window_exactly_once_in_windows_under_the_limit():
    items = many_profiles(10_100)
    items.insert(5, dict(items[5], ProfileId="undated-b", FirstSeen=None))
    items.insert(9, dict(items[9], ProfileId="undated-a", FirstSeen=None))
    emu = Emulator(generate(200, n_devices=5, days=1, seed=3), profiles=items, lenient_window=False)
    store, rec = store_of(emu)
    got = store.profiles()
    assert got.height == 10_102
    assert got.get_column("ProfileId").n_unique() == 10_102
    want = emu.profiles.frame().sort("FirstSeen", "ProfileId", nulls_last=True)
    assert got.equals(want)
    assert got.get_column("ProfileId").tail(2).to_list() == ["undated-a", "undated-b"]
    for q in rec.params:
        assert int(q["$skip"]) + int(q["$top"]) <= 9_999
    windows = {q["$filter"] for q in rec.params if "FirstSeen lt" in q.get("$filter", "")}
    assert len(windows) >= 2  # the range was cut into windows on FirstSeen
    # a FirstSeen range is half-open
    part = store.profiles(start="2024-03-01T00:10:00Z", end="2024-03-01T00:20:00Z")
    assert part.height == 600 * 4
    assert part.get_column("ProfileId")[0] == "p002400"


def test_derived_profiles_follow_the_documented_rule():
    ev = generate(3000, n_devices=40, days=2, seed=11)
    emu = Emulator(ev)
    store, _ = store_of(emu)
    got = store.profiles()
    assert got.equals(profiles_from_events(emu.events()).sort("FirstSeen", "ProfileId"))
    # every device is in exactly one profile; a profile with an e-mail holds every device
    # whose latest e-mail event carries that address
    devices = got.get_column("DeviceIds").explode()
    assert devices.n_unique() == devices.len() == ev.get_column("DeviceId").n_unique()
    named = got.filter(pl.col("Info") != "{}")
    assert 0 < named.height < got.height
    for row in named.iter_rows(named=True):
        email = orjson.loads(row["Info"])["Email"]
        owners = (ev.filter(pl.col("User").struct.field("Email") != "").sort("EventTime")
                  .group_by("DeviceId").agg(pl.col("User").struct.field("Email").last())
                  .filter(pl.col("Email") == email).get_column("DeviceId").sort().to_list())
        assert row["DeviceIds"] == owners and row["ContactInformation"] == ["Mailable"]
        mine = ev.filter(pl.col("DeviceId").is_in(owners))
        assert row["FirstSeen"] == mine.get_column("EventTime").min()
        assert row["LastSeen"] == mine.get_column("EventTime").max()


def test_bad_filters_and_files_say_what_and_where(tmp_path):
    emu = Emulator(generate(200, n_devices=5, days=1, seed=3))
    store, _ = store_of(emu)
    with pytest.raises(ApiError) as err:
        store.profiles("EventType eq home")
    assert "400" in str(err.value)
    assert "unknown profile property EventType (known: ProfileId, Name, Scope" in str(err.value)
    with pytest.raises(ApiError, match="DeviceIds is a list: compare it with eq or ne"):
        store.profiles("DeviceIds gt x")
    bad = tmp_path / "p.ndjson"
    bad.write_text(orjson.dumps(VENDOR).decode() + "\n\n" + orjson.dumps(dict(VENDOR, Visits="many")).decode() + "\n")
    with pytest.raises(ProfileFormatError, match=r"p\.ndjson:3: Visits must be an integer, got \"many\""):
        read_profiles(bad)
    bad.write_text(orjson.dumps(dict(VENDOR, LastSeen="yesterday")).decode() + "\n")
    with pytest.raises(ProfileFormatError, match=r"p\.ndjson:1: LastSeen 'yesterday' is not an ISO 8601 time"):
        read_profiles(bad)


def test_more_undated_profiles_than_one_query_returns_is_an_error_not_a_part(monkeypatch):
    import psanalytics.api.profiles as profiles_mod
    from psanalytics.api.profiles import ProfilesError

    monkeypatch.setattr(profiles_mod, "RESULT_WINDOW", 5)  # the window, made small
    items = [dict(VENDOR, ProfileId=f"u{i}", FirstSeen=None) for i in range(7)]
    store, _ = store_of(Emulator(generate(200, n_devices=5, days=1, seed=3), profiles=items))
    with pytest.raises(ProfilesError) as err:
        store.profiles()
    assert str(err.value) == (
        "GET /api/v2.0/Profiles $filter=FirstSeen eq null: 7 profiles have no FirstSeen, more than "
        "one query returns (5); they cannot be paged exactly. Narrow the filter (e.g. by Scope or Name).")
    assert store.profiles("ProfileId eq u3").get_column("ProfileId").to_list() == ["u3"]
