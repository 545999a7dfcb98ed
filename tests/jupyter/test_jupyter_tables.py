"""Widget tables: one line per row, local time to the second, URL paths, "first N of M" once."""

from __future__ import annotations

import re
import time

import polars as pl
import pytest

from psanalytics import schema
from psanalytics.jupyter.tables import frame_html


@pytest.fixture
def stockholm(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def cells(page: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]


def titles(page: str) -> list[list[str | None]]:
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    return [
        [t or None for t in re.findall(r"<t[hd](?:[^>]*?title='([^']*)')?[^>]*>", row)]
        for row in rows
    ]


def test_tidy_table_rows_times_paths_users_and_count(stockholm):
    frame = schema.normalize(
        [
            {
                "EventTime": "2024-03-04T10:00:00.1234567Z",
                "EventType": "order",
                "DeviceId": "d1",
                "PageUri": "https://shop.example.com/checkout/done?id=7",
                "User": {"Email": "ann@example.com", "Name": "Ann"},
                "Payload": {"total": 12.5},
            },
            {"EventTime": "2024-07-01T23:59:59Z", "EventType": "page", "DeviceId": "d2"},
            {"EventTime": "2024-07-02T00:00:00Z", "EventType": "page", "DeviceId": "d3"},
        ]
    ).select("EventTime", "EventType", "PageUri", "User", "Payload")
    frame = frame.with_columns(pl.Series("n", [1234567, None, 3]))
    page = frame_html(frame, rows=2)
    assert "shape:" not in page and "border=" not in page
    assert page.count("first 2 of 3 rows") == 1 and page.endswith("first 2 of 3 rows</div>")
    assert cells(page) == [
        ["EventTime (CET/CEST)", "EventType", "PageUri (path)", "User", "Payload", "n"],
        # local time (CET in March, CEST in July) to the second
        ["2024-03-04 11:00:00", "order", "/checkout/done?id=7", "Ann &lt;ann@example.com&gt;",
         '{&quot;total&quot;:12.5}', "1,234,567"],
        ["2024-07-02 01:59:59", "page", "", "", "null", "null"],
    ]  # fmt: skip
    first = titles(page)[1]
    # every digit the frame holds (100 ns), in UTC, and the full URL, as tooltips
    assert first[0] == "2024-03-04T10:00:00.123456700Z"
    assert first[2] == "https://shop.example.com/checkout/done?id=7"
    assert titles(page)[0][0] == "Datetime(time_unit=&#x27;ns&#x27;, time_zone=&#x27;UTC&#x27;)"


def test_all_rows_shown_says_the_count_once():
    page = frame_html(pl.DataFrame({"a": [1.5, 0.25], "b": ["x", "y"]}), rows=20)
    assert cells(page)[1:] == [["1.5", "x"], ["0.25", "y"]]
    assert page.endswith(">2 rows</div>")
    assert frame_html(pl.DataFrame({"a": [1]})).endswith(">1 row</div>")
