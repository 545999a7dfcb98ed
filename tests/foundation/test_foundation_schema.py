import polars as pl

from psanalytics import schema


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
    assert row["User"] == {"Email": "", "Name": ""}
    # all 7 fractional digits kept: .7957819 s = 795781900 ns
    ns = df.select(pl.col("EventTime").dt.nanosecond()).item()
    assert ns == 795_781_900


def test_round_trip_frame_api_json_frame_is_identical():
    df = schema.normalize([SEED_EVENT])
    text = schema.to_api_json(df)
    assert b'"EventTime":"2017-09-15T07:16:34.7957819Z"' in text
    assert schema.normalize(text).equals(df)
