from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from psanalytics import schema

NOW = datetime(2024, 1, 10, 12, 0, 0, tzinfo=UTC)

ROWS = [
    {"TrackId": "t1", "DeviceId": "d1", "EventType": "epiPageView", "Value": "Viewed North America",
     "EventTime": "2024-01-01T10:00:00.1234567Z", "CountryCode": "SE", "City": "Stockholm",
     "PageUri": "https://example.com/en/add_to_cart",
     "User": {"Email": "a@b.se", "Name": "Anna"},
     "Payload": {"name": "Home page", "price": 3.5, "qty": 2, "epi": {"language": "sv"},
                 "tags": ["x", "y"]}},
    {"TrackId": "t2", "DeviceId": "d2", "EventType": "order", "Value": "Placed order",
     "EventTime": "2024-01-02T10:00:00Z", "CountryCode": "", "City": "",
     "PageUri": "https://example.com/checkout", "Payload": None},
    {"TrackId": "t3", "DeviceId": "d1", "EventType": "epiPageView", "Value": "pageview",
     "EventTime": "2024-01-02T23:59:59.9999999Z", "CountryCode": "SE", "City": "Göteborg",
     "PageUri": "https://example.com/sv/", "User": {"Email": "A@B.se", "Name": ""},
     "Payload": {"name": "Start", "price": 10, "epi": {"language": "en"}}},
    {"TrackId": "t4", "DeviceId": "d3", "EventType": "basket", "Value": "Added to basket",
     "EventTime": "2024-01-03T00:00:00Z", "CountryCode": "NO", "City": "Oslo",
     "PageUri": "https://example.com/no/", "Payload": {"name": "Boots", "price": 120.25,
                                                       "qty": 1}},
    {"TrackId": "t5", "DeviceId": "d4", "EventType": "EPIPAGEVIEW", "Value": "",
     "EventTime": None, "CountryCode": "se", "City": "Malmö",
     "PageUri": "", "Payload": {"name": "", "epi": {"language": "sv"}}},
]


@pytest.fixture
def events() -> pl.DataFrame:
    return schema.normalize(ROWS)
