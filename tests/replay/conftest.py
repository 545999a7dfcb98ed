from __future__ import annotations

import polars as pl
import pytest

from psanalytics.schema import normalize


def make_events() -> pl.DataFrame:
    """Six hand-written events: two devices, an order, a hero click, one event without TrackId."""
    rows = [
        {"TrackId": "t-1", "DeviceId": "dev-a", "EventType": "home", "EventTime": "2024-03-04T10:00:00.0000000Z",
         "Value": "Visited the start page.", "CountryCode": "SE", "RemoteAddress": "94.27.91.168",
         "SessionId": "s-a1", "Payload": {"name": "Start page", "contentLink": "5", "epi": {"language": "sv"}}},
        {"TrackId": "t-2", "DeviceId": "dev-b", "EventType": "product", "EventTime": "2024-03-04T10:00:01.5000000Z",
         "Value": "Viewed product", "CountryCode": "", "RemoteAddress": "2a00:23c4:a851:23e1:731d:77a1:e061:138e",
         "SessionId": "s-b1", "Payload": {"product": {"refCode": "P-1", "price": 8.95}}},
        {"TrackId": "t-3", "DeviceId": "dev-a", "EventType": "order", "EventTime": "2024-03-04T10:00:30.1234567Z",
         "Value": "Placed order PO-1", "CountryCode": "SE", "RemoteAddress": "94.27.91.168", "SessionId": "s-a1",
         "User": {"Email": "Anna@Example.com", "Name": "Anna"},
         "Payload": {"orderId": "PO-1", "total": 611.85, "currency": "EUR", "lines": [{"qty": 1}]}},
        {"TrackId": "t-4", "DeviceId": "dev-b", "EventType": "epiHeroBlockClick", "EventTime": "2024-03-04T10:01:00Z",
         "Value": "Clicked hero", "CountryCode": "DE", "RemoteAddress": "79.244.225.54", "SessionId": "s-b1",
         "Payload": {"target": "/sale", "variation": {"id": "301"}}},
        {"TrackId": "", "DeviceId": "dev-b", "EventType": "epiSearch", "EventTime": "2024-03-04T10:02:00Z",
         "Value": "Searched tents", "CountryCode": "DE", "RemoteAddress": "79.244.225.54", "SessionId": "s-b1",
         "Payload": {"keyword": "tents", "hits": 28, "exact": True, "none": None}},
        {"TrackId": "t-6", "DeviceId": "dev-a", "EventType": "home", "EventTime": "2024-03-05T08:00:00Z",
         "Value": "Visited the start page.", "CountryCode": "SE", "RemoteAddress": "94.27.91.168",
         "SessionId": "s-a2", "Payload": None},
    ]
    return normalize(rows)


@pytest.fixture
def events() -> pl.DataFrame:
    return make_events()
