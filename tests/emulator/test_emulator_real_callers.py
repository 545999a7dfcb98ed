"""The request shapes real callers sent (shared/spec/apis.md section 5), answered as they
expected. Each test is one shape found in public code that ran against the real service."""

from __future__ import annotations

import httpx
import pytest

from psanalytics import schema
from psanalytics.emulator import Emulator
from psanalytics.query.odata import ODataError, compile_filter

KEY = "real-callers-key"
V2 = "/api/v2.0/TrackEvents"
MAILING = "c0ffee00-1111-2222-3333-444455556666"

EVENTS = [
    {"TrackId": "", "DeviceId": "a@b.c", "EventType": "epiCampaignMailingtouser",
     "EventTime": "2019-03-11T09:00:00.0000000Z", "Value": "sent",
     "User": {"Email": "a@b.c", "Name": "A"}, "Payload": {"epi": {"campaign": {"mailingId": MAILING}}}},
    {"TrackId": "", "DeviceId": "a@b.c", "EventType": "epiPageView",
     "EventTime": "2019-03-11T10:30:00.0000000Z", "Value": "Viewed start page",
     "User": {"Email": "a@b.c", "Name": "A", "Info": {"Email": "a@b.c", "Market": "SE"}}},
    {"TrackId": "t3", "DeviceId": "3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10", "EventType": "epiPageView",
     "EventTime": "2019-03-12T08:00:00.0000000Z", "Value": "Viewed start page",
     "PageUri": "https://x.com/a-b/c.d?e=1", "User": {"Email": "first.last+tag@x-y.com", "Name": "",
                                                      "Info": {"Email": "first.last+tag@x-y.com",
                                                               "Market": "DE", "Zip": "10115"}}},
]


@pytest.fixture(scope="module")
def client():
    emu = Emulator(schema.normalize(EVENTS), api_key=KEY)
    with httpx.Client(transport=emu.transport(), base_url="http://emu",
                      headers={"Authorization": f"epi-single {KEY}"}) as c:
        yield c


def _devices(client: httpx.Client, query: str) -> list[str]:
    r = client.get(V2 + "?" + query)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items", "total", "count"}  # read lower-case, case-sensitively
    return [e["DeviceId"] + "/" + e["EventType"] for e in body["items"]]


@pytest.mark.parametrize(("flt", "want"), [
    # unquoted e-mails (four independent code bases)
    ("User.Email eq a@b.c", ["a@b.c/epiCampaignMailingtouser", "a@b.c/epiPageView"]),
    ("DeviceId eq a@b.c", ["a@b.c/epiCampaignMailingtouser", "a@b.c/epiPageView"]),
    ("User.Email eq first.last+tag@x-y.com",
     ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    # a bare date with eq is that whole day; a time without Z is UTC
    ("EventType eq epiPageView and EventTime eq 2019-03-11", ["a@b.c/epiPageView"]),
    ("EventTime gt 2019-03-11T10:00:00", ["a@b.c/epiPageView",
                                          "3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    # GUIDs bare; the campaign's mailing id in the Payload
    ("DeviceId eq 3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10", ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    (f"Payload.epi.campaign.mailingId eq {MAILING}", ["a@b.c/epiCampaignMailingtouser"]),
    ("PageUri eq https://x.com/a-b/c.d?e=1", ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    # the user's Info object (free-form strings): Info.Email as real code wrote it
    ("Info.Email eq a@b.c", ["a@b.c/epiPageView"]),
    ("User.Info.Email eq first.last+tag@x-y.com", ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    ("User.Info.Market ne SE", ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    ("User.Info.Zip eq 10115", ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
    ("User.Info eq null", ["a@b.c/epiCampaignMailingtouser"]),
    ("not (User.Info.Market eq SE) and User.Info ne null",
     ["3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/epiPageView"]),
])
def test_filters_as_real_code_wrote_them(client, flt, want):
    from urllib.parse import quote

    assert _devices(client, "$filter=" + quote(flt)) == want


def test_user_info_filters_client_side_give_the_same_rows():
    from psanalytics.query.odata import filter_frame

    frame = schema.normalize(EVENTS)
    got = filter_frame(frame, "Info.Email eq a@b.c or User.Info.Market eq DE")
    assert got.get_column("EventTime").dt.hour().to_list() == [10, 8]
    assert filter_frame(frame, "User.Info.Missing eq x").height == 0
    assert filter_frame(frame, "not (User.Info.Missing eq x)").height == 3


def test_user_info_filters_through_the_client():
    """store.events()/count() send the filter as written; the emulator answers it (and the
    client's own parse of it, for its time windows, accepts it)."""
    from psanalytics._connect import connect
    from psanalytics.query.odata import F

    emu = Emulator(schema.normalize(EVENTS), api_key=KEY)
    store = connect("http://emu", KEY, transport=emu.transport(), progress=False)
    got = store.events(filter="Info.Email eq first.last+tag@x-y.com")
    assert got.get_column("TrackId").to_list() == ["t3"]
    assert got.row(0, named=True)["User"]["Info"] == '{"Email":"first.last+tag@x-y.com","Market":"DE","Zip":"10115"}'
    assert store.count(F.User.Info.Market == "SE") == 1
    assert store.events(filter=(F.User.Info.Market == "SE") & (F.EventTime >= "2019-03-11")).height == 1


def test_user_info_errors_say_what_to_write():
    with pytest.raises(ODataError) as info:
        compile_filter("User.Info eq SE")
    assert info.value.position == 1
    assert info.value.reason == ("User.Info itself can only be compared with null "
                                 "(use a path such as User.Info.Email)")
    with pytest.raises(ODataError) as info:
        compile_filter("User.Phone eq 1")
    assert info.value.reason == ("unknown property User.Phone (User has no field Phone; known: "
                                 "User.Email, User.Name, User.Info.<key>, Payload.<path>)")


def test_plus_for_a_space_and_trailing_spaces_from_a_query_builder(client):
    # "+" is a space in a query string; a builder joining with " &" leaves a space behind.
    assert _devices(client, "$filter=EventType+eq+epiPageView+and+DeviceId+eq+a@b.c") == ["a@b.c/epiPageView"]
    assert _devices(client, "$filter=EventType eq epiPageView &$top=1 &") == ["a@b.c/epiPageView"]


def test_parameters_the_api_does_not_define_are_ignored(client):
    assert _devices(client, "appKey=secret&$top=1") == ["a@b.c/epiCampaignMailingtouser"]
    assert _devices(client, "0&$top=1") == ["a@b.c/epiCampaignMailingtouser"]


def test_top_10000_as_shipped_dashboards_sent_it(client):
    assert len(_devices(client, "$top=10000")) == 3


def test_gateway_auth_header(client):
    r = client.get(V2, headers={"Authorization": "", "Ocp-Apim-Subscription-Key": KEY})
    assert r.status_code == 200 and r.json()["total"] == 3


def test_ambiguous_bare_value_is_a_clear_error():
    with pytest.raises(ODataError) as info:
        compile_filter("Value eq O'Brien")
    assert info.value.position == 10
    assert info.value.reason == ("the value \"O'Brien\" has a quote inside: write it quoted, doubling "
                                 "the quote ('O''Brien')")
