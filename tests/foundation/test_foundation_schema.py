import datetime as dt
import warnings

import orjson
import pandas as pd
import polars as pl
import pytest

from psanalytics import schema
from psanalytics.errors import SchemaError

SEED_EVENT = {
    "DeviceId": "91687965-bc76-49a2-862c-e014441b8f6b",
    "EventType": "home",
    "Value": "Visited the start page.",
    "PageUri": "https://example.com/en/",
    "RemoteAddress": "::1",
    "Payload": {"name": "Home page", "contentGuid": "440be34f-d08a-4a7e-b019-55448d065d28",
                "contentLink": "163204", "contentTypeID": 170, "parentLink": "163198"},
    "EventTime": "2017-09-15T07:16:34.7957819Z",
    "CountryCode": "Localhost",
}


def test_seed_event_normalizes_to_canonical_frame():
    df = schema.normalize([SEED_EVENT])
    assert df.schema == schema.EVENTS_SCHEMA
    assert list(df.columns) == list(schema.COLUMNS)
    row = df.row(0, named=True)
    assert row["TrackId"] == "" and row["City"] == "" and row["SessionId"] == ""
    assert row["User"] == {"Email": "", "Name": "", "Info": None}
    # all 7 fractional digits kept: .7957819 s = 795781900 ns
    ns = df.select(pl.col("EventTime").dt.nanosecond()).item()
    assert ns == 795_781_900


def test_round_trip_frame_api_json_frame_is_identical():
    df = schema.normalize([SEED_EVENT])
    text = schema.to_api_json(df)
    assert b'"EventTime":"2017-09-15T07:16:34.7957819Z"' in text
    assert schema.normalize(text).equals(df)


# --------------------------------------------------------------------------- more shapes


# The preview response from /work/shared/seeds/profile-store-track-events.txt, verbatim
# apart from the e-mail the doc site obfuscated.
PREVIEW_RESPONSE = """{
  "items" : [
     {"TrackId" : "", "DeviceId" : "558356a7-86d2-4ca7-9c00-c01c46d81111",
      "EventType" : "pageview", "Value" : "Example page view", "Scope" : "default",
      "PageUri" : "http://example.com", "PageTitle" : "Example Home",
      "RemoteAddress" : "192.168.0.1", "SessionId" : "",
      "User" : {"Email" : "john@example.com", "Name" : "John Smith"},
      "Payload" : null, "CountryCode" : "SE", "City" : "",
      "EventTime" : "2020-01-23T21:27:49.3361008Z"},
     {"TrackId" : "", "DeviceId" : "558356a7-86d2-4ca7-9c00-c01c46d82222",
      "EventType" : "pageview", "Value" : "Example page view from another device",
      "Scope" : "default", "PageUri" : "http://example.com", "PageTitle" : "Example Home",
      "RemoteAddress" : "192.168.0.1", "SessionId" : "",
      "User" : {"Email" : "john@example.com", "Name" : "John Smith"},
      "Payload" : null, "CountryCode" : "SE", "City" : "",
      "EventTime" : "2020-01-23T21:27:59.8661238Z"}
  ],
  "count" : 2
}"""


def _utc(*a: int) -> dt.datetime:
    return dt.datetime(*a, tzinfo=dt.UTC)


def test_preview_envelope_from_seed_doc():
    df = schema.normalize(PREVIEW_RESPONSE)
    assert df.schema == schema.EVENTS_SCHEMA
    assert df.height == 2
    assert df.row(1, named=True) == {
        "TrackId": "",
        "DeviceId": "558356a7-86d2-4ca7-9c00-c01c46d82222",
        "EventType": "pageview",
        "Value": "Example page view from another device",
        "Scope": "default",
        "PageUri": "http://example.com",
        "PageTitle": "Example Home",
        "RemoteAddress": "192.168.0.1",
        "CountryCode": "SE",
        "City": "",
        "SessionId": "",
        "EventTime": _utc(2020, 1, 23, 21, 27, 59, 866123),
        "User": {"Email": "john@example.com", "Name": "John Smith", "Info": None},
        "Payload": None,
        "Headers": None,
        "Extras": None,
    }
    assert df.select(pl.col("EventTime").dt.nanosecond()).to_series().to_list() == [
        336_100_800,
        866_123_800,
    ]
    # bytes and a parsed dict give the same frame
    assert schema.normalize(PREVIEW_RESPONSE.encode()).equals(df)
    assert schema.normalize(orjson.loads(PREVIEW_RESPONSE)).equals(df)


def test_seed_event_payload_text_and_api_json():
    df = schema.normalize([SEED_EVENT])
    assert orjson.loads(df.item(0, "Payload")) == SEED_EVENT["Payload"]
    out = orjson.loads(schema.to_api_json(df, envelope=True))
    assert out["total"] == 1 and out["count"] == 1
    item = out["items"][0]
    assert list(item) == list(schema.API_ORDER)
    assert item["EventTime"] == "2017-09-15T07:16:34.7957819Z"
    assert item["Payload"] == SEED_EVENT["Payload"]
    assert item["User"] == {"Email": "", "Name": ""}


def test_camelcase_tracking_bodies():
    bodies = [
        {
            "deviceId": "d-1",
            "eventType": "order",
            "value": "Placed order 7",
            "pageUri": "https://shop.example/checkout/",
            "pageTitle": "Checkout",
            "eventTime": "2024-03-04T10:00:00.1234567+01:00",
            "scope": "b2b",
            "remoteAddress": "81.2.3.4",
            "payload": {"orderId": "7", "total": 10.5},
            "user": {"name": "Anna", "email": "anna@example.com", "info": {"Market": "SE"}},
        },
        {"deviceId": "d-2", "eventType": "home", "value": "Home"},
    ]
    df = schema.normalize(bodies)
    assert df.schema == schema.EVENTS_SCHEMA
    r0, r1 = df.rows(named=True)
    assert r0["DeviceId"] == "d-1" and r0["Scope"] == "b2b"
    assert r0["EventTime"] == _utc(2024, 3, 4, 9, 0, 0, 123456)
    assert df.select(pl.col("EventTime").dt.nanosecond()).item(0, 0) == 123_456_700
    assert r0["User"] == {"Email": "anna@example.com", "Name": "Anna", "Info": '{"Market":"SE"}'}
    assert orjson.loads(r0["Payload"]) == {"orderId": "7", "total": 10.5}
    assert r1 == {
        "TrackId": "", "DeviceId": "d-2", "EventType": "home", "Value": "Home", "Scope": "",
        "PageUri": "", "PageTitle": "", "RemoteAddress": "", "CountryCode": "", "City": "",
        "SessionId": "", "EventTime": None, "User": {"Email": "", "Name": "", "Info": None},
        "Payload": None, "Headers": None, "Extras": None,
    }


def test_loose_polars_frame_flattened_user_and_naive_times():
    loose = pl.DataFrame(
        {
            "deviceid": ["a", "b"],
            "EVENTTYPE": ["home", None],
            "eventTime": [dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 2, 12)],
            "User.Email": ["x@example.com", None],
            "Value": [1, 2],
        }
    )
    df = schema.normalize(loose)
    assert df.schema == schema.EVENTS_SCHEMA
    assert df.get_column("EventType").to_list() == ["home", ""]
    assert df.get_column("Value").to_list() == ["1", "2"]
    assert df.get_column("EventTime").to_list() == [_utc(2024, 1, 1, 12), _utc(2024, 1, 2, 12)]
    assert df.get_column("User").to_list() == [
        {"Email": "x@example.com", "Name": "", "Info": None},
        {"Email": "", "Name": "", "Info": None},
    ]
    lazy = schema.normalize(loose.lazy())
    assert lazy.equals(df)


def test_pandas_frame():
    pdf = pd.DataFrame(
        {
            "DeviceId": ["a"],
            "EventType": ["home"],
            "EventTime": pd.to_datetime(["2024-01-01T00:00:00.0000001Z"]),
            "Payload": ['{"a":1}'],
        }
    )
    df = schema.normalize(pdf)
    assert df.schema == schema.EVENTS_SCHEMA
    assert df.select(pl.col("EventTime").dt.nanosecond()).item() == 100
    assert df.item(0, "Payload") == '{"a":1}'


def test_epoch_millisecond_times():
    df = schema.normalize([{"DeviceId": "a", "EventTime": 1_700_000_000_123}])
    assert df.item(0, "EventTime") == _utc(2023, 11, 14, 22, 13, 20, 123000)


def test_unknown_fields_headers_and_user_info_are_kept_and_written_back():
    full = schema.to_api_records(schema.normalize([SEED_EVENT]))[0]  # every API key
    recs = [dict(full, Foo=1, Headers={"x": "y"}),
            dict(full, Bar=[2, {"c": None}], User={"Email": "", "Name": "", "Info": {"Market": "SE"},
                                                        "Phone": "1"}),
            dict(full, Headers={}, Extras="kept too")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped, so nothing to warn about
        df = schema.normalize(recs)
    assert df.columns == list(schema.COLUMNS)
    assert df.get_column("Extras").to_list() == [
        '{"Foo":1}', '{"User":{"Phone":"1"},"Bar":[2,{"c":null}]}', '{"Extras":"kept too"}']
    assert df.get_column("Headers").to_list() == ['{"x":"y"}', None, "{}"]
    assert df.get_column("User").struct.field("Info").to_list() == [None, '{"Market":"SE"}', None]
    # Written back: the same keys and values as the source, and read again: the same frame.
    back = orjson.loads(schema.to_api_json(df))
    assert back == recs
    assert schema.normalize(back).equals(df)


def test_bad_event_time_names_the_row():
    with pytest.raises(SchemaError, match=r"EventTime at row 1 is not an ISO 8601 time: 'yesterday'"):
        schema.normalize([SEED_EVENT, dict(SEED_EVENT, EventTime="yesterday")])


def test_not_json_and_not_records():
    with pytest.raises(SchemaError, match="not valid JSON"):
        schema.normalize(b"{nope")
    with pytest.raises(SchemaError, match="record 1 is int"):
        schema.normalize([SEED_EVENT, 5])


def test_generated_round_trip_keeps_every_digit(small):
    text = schema.to_api_json(small)
    back = schema.normalize(text)
    assert back.equals(small)
    times = [r["EventTime"] for r in orjson.loads(text)]
    assert all(len(t) == 28 and t.endswith("Z") and t[19] == "." for t in times)
    # NDJSON lines through the fast reader
    nd = (schema.api_json_lines(small).str.join("\n").item() + "\n").encode()
    assert schema.ndjson_to_frame(nd).equals(small)
    envelope = orjson.loads(schema.to_api_json(small, envelope=True, total=99_999))
    assert envelope["total"] == 99_999 and envelope["count"] == small.height


def test_ndjson_reader_other_key_order_and_camel_case():
    lines = [
        b'{"payload": {"b": 1, "a": [1, 2]}, "eventType": "x", "deviceId": "d",'
        b' "eventTime": "2024-01-01T00:00:00Z", "user": {"email": "e@x", "name": "N"}}',
        b"",
        b'{"eventType": "y", "deviceId": "d", "eventTime": "2024-01-01T00:00:01.5Z",'
        b' "payload": null}',
    ]
    df = schema.ndjson_to_frame(b"\n".join(lines))
    assert df.get_column("Payload").to_list() == ['{"b":1,"a":[1,2]}', None]
    assert df.get_column("User").to_list() == [
        {"Email": "e@x", "Name": "N", "Info": None},
        {"Email": "", "Name": "", "Info": None},
    ]
    assert df.get_column("EventTime").to_list() == [
        _utc(2024, 1, 1), _utc(2024, 1, 1, 0, 0, 1, 500000)
    ]


def test_ndjson_reader_bad_line_number():
    data = b'{"DeviceId": "a"}\n\n{"DeviceId": \n{"DeviceId": "c"}\n'
    with pytest.raises(schema.NdjsonError) as info:
        schema.ndjson_to_frame(data)
    assert info.value.line == 3


def test_time_formats_accepted():
    s = pl.Series(
        ["2024-01-01", "2024-01-01 10:00:00", "2024-01-01T10:00:00+02:00",
         "2024-01-01T10:00:00.123456789Z", "2024-01-01T10:00:00z"]
    )
    out = schema._time_column(s).to_list()
    assert out == [
        _utc(2024, 1, 1), _utc(2024, 1, 1, 10), _utc(2024, 1, 1, 8),
        _utc(2024, 1, 1, 10, 0, 0, 123456), _utc(2024, 1, 1, 10),
    ]


def test_ndjson_payload_not_last_or_ambiguous_is_parsed_exactly():
    lines = [
        b'{"DeviceId":"a","Payload":{"x":1.0}}',
        b'{"Payload":{"y":2.5},"DeviceId":"b","Foo":1}',
        b'{"DeviceId":"c","Payload":{"Value":3,"Payload":[1]}}',
        b'{"DeviceId":"d","Payload":null}  ',
    ]
    df = schema.ndjson_to_frame(b"\n".join(lines))
    assert df.get_column("Extras").to_list() == [None, '{"Foo":1}', None, None]
    assert df.select("DeviceId", "Payload").rows() == [
        ("a", '{"x":1.0}'),
        ("b", '{"y":2.5}'),
        ("c", '{"Value":3,"Payload":[1]}'),
        ("d", None),
    ]


def test_ndjson_field_first_seen_late_is_read():
    lines = [orjson.dumps({"DeviceId": str(i), "EventTime": "2024-01-01T00:00:00Z"})
             for i in range(1_200)]
    lines.append(orjson.dumps({"DeviceId": "late", "EventTime": "2024-01-01T00:00:00Z",
                               "User": {"Email": "e@x", "Name": "n"}, "Payload": {"a": 1}}))
    df = schema.ndjson_to_frame(b"\n".join(lines))
    assert df.height == 1_201
    assert df.tail(2).select("DeviceId", "User", "Payload").rows() == [
        ("1199", {"Email": "", "Name": "", "Info": None}, None),
        ("late", {"Email": "e@x", "Name": "n", "Info": None}, '{"a":1}'),
    ]


def test_records_field_first_seen_late_and_list_payload_column():
    recs = [{"DeviceId": str(i)} for i in range(1_500)]
    recs.append({"DeviceId": "late", "Scope": "b2b", "User": {"Email": "e"}})
    df = schema.normalize(recs)
    assert df.tail(1).select("DeviceId", "Scope", "User").rows() == [
        ("late", "b2b", {"Email": "e", "Name": "", "Info": None})
    ]
    assert df.item(0, "Scope") == ""
    frame = pl.DataFrame({"DeviceId": ["a", "b"], "Payload": [[1, 2], None]})
    assert schema.normalize(frame).get_column("Payload").to_list() == ["[1,2]", None]
    nested = pl.DataFrame({"DeviceId": ["a", "b"], "Payload": [{"x": 1}, None]})
    assert schema.normalize(nested).get_column("Payload").to_list() == ['{"x":1}', None]
