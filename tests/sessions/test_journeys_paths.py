"""Paths anchored on a start or end step, URL cleaning, and the settled vocabulary."""

from __future__ import annotations

import warnings

import polars as pl
import pytest
from sessions_streams import ev, frame

from psanalytics import journeys
from psanalytics.errors import JourneyError, PsaWarning
from psanalytics.journeys import ENTRY, EXIT, OTHER


def shop() -> pl.DataFrame:
    return frame(
        [
            ev("a", 0, event_type="home"), ev("a", 1, event_type="product"),
            ev("a", 2, event_type="basket"), ev("a", 3, event_type="checkout"),
            ev("b", 0, event_type="product"), ev("b", 1, event_type="basket"),
            ev("b", 2, event_type="basket"), ev("b", 3, event_type="product"),
            ev("c", 0, event_type="home"), ev("c", 1, event_type="search"),
        ]
    )  # fmt: skip


def test_paths_from_a_start_step():
    p = journeys.paths(shop(), start="product", steps=2, within="device", min_share=0)
    assert p.rows() == [
        (0, "product", "basket", 2, 1.0),
        (1, "basket", "checkout", 1, 0.5),
        (1, "basket", "product", 1, 0.5),  # b's repeated basket collapsed into one step
    ]
    # one more step reaches the exits
    p3 = journeys.paths(shop(), start="product", steps=3, within="device", min_share=0)
    assert p3.filter(pl.col("from_depth") == 2).rows() == [
        (2, "checkout", EXIT, 1, 0.5),
        (2, "product", EXIT, 1, 0.5),
    ]


def test_paths_to_an_end_step_and_from_the_entry():
    p = journeys.paths(shop(), end="basket", steps=2, within="device", min_share=0)
    # a: home, product, basket; b's last basket (collapsed): product, basket
    assert p.rows() == [
        (0, ENTRY, "product", 1, 0.5),
        (0, "home", "product", 1, 0.5),
        (1, "product", "basket", 2, 1.0),
    ]
    q = journeys.paths(shop(), steps=1, within="device", min_share=0)
    assert q.rows() == [
        (0, "home", "product", 1, 1 / 3),
        (0, "home", "search", 1, 1 / 3),
        (0, "product", "basket", 1, 1 / 3),
    ]
    e = journeys.paths(shop(), start=pl.col("EventType") == "search", steps=3, within="device")
    assert e.rows() == [(0, "search", EXIT, 1, 1.0)]


def test_min_share_lumps_rare_steps():
    p = journeys.paths(shop(), steps=1, within="device", min_share=0.5)
    assert p.rows() == [(0, "home", OTHER, 2, 2 / 3), (0, OTHER, OTHER, 1, 1 / 3)]
    with pytest.raises(JourneyError, match="give start= or end=, not both"):
        journeys.paths(shop(), start="a", end="b")


def test_clean_url_and_page_types():
    urls = [
        "https://www.northwind-outdoor.com/sv-se/?utm_source=google&gclid=x",
        "https://shop.example/sv-se/shop/tents/alpine-tent-100/?utm_medium=email#reviews",
        "https://shop.example/en-us/order/12345/receipt/",
        "https://shop.example/content/3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10/1/2",
        "https://shop.example/sv-se/search/?q=tent",
        "https://shop.example/sv-se/checkout/confirmation/",
        "https://shop.example/sv-se/shop/tents/",
        "https://shop.example/en-us/inspiration/12-tents/",
        "https://shop.example/about-us/team",
        "",
    ]
    df = pl.DataFrame({"PageUri": urls})
    got = df.select(
        journeys.clean_url("PageUri").alias("path"),
        journeys.clean_url(pl.col("PageUri"), keep_host=True).alias("host_path"),
        journeys.page_type("PageUri").alias("type"),
    )
    assert got["path"].to_list() == [
        "/sv-se/", "/sv-se/shop/tents/alpine-tent-100/", "/en-us/order/:id/receipt/",
        "/content/:id/:id/:id", "/sv-se/search/", "/sv-se/checkout/confirmation/",
        "/sv-se/shop/tents/", "/en-us/inspiration/12-tents/", "/about-us/team", "",
    ]  # fmt: skip
    assert got["host_path"][0] == "www.northwind-outdoor.com/sv-se/"
    assert got["type"].to_list() == [
        "home", "product", "order", "content", "search", "order confirmation", "category",
        "article", "about-us", "",
    ]  # fmt: skip
    own = df.select(journeys.page_type("PageUri", [(r"^/about", "about")], default="page"))
    assert own.to_series().to_list()[-2:] == ["about", ""]


def test_levels_page_type_and_page_path_in_transitions():
    f = frame(
        [
            ev("u", 0, page="https://s.example/sv-se/?utm_source=x"),
            ev("u", 1, page="https://s.example/sv-se/basket/"),
        ]
    )
    t = journeys.transitions(f, level="page_type", within="device")
    assert {(r[0], r[1]) for r in t.rows()} == {
        (ENTRY, "home"),
        ("home", "basket"),
        ("basket", EXIT),
    }
    t = journeys.transitions(f, level="page_path", within="device")
    assert ("/sv-se/", "/sv-se/basket/") in {(r[0], r[1]) for r in t.rows()}


def test_old_argument_names_warn_and_still_work():
    f = shop()
    new = journeys.transitions(f, level="event_type", within="device")
    with pytest.warns(
        journeys.DeprecatedArgumentWarning,
        match=r"transitions\(path=\.\.\.\) is deprecated .* use within=",
    ) as w:
        old = journeys.transitions(f, level="event_type", path="device")
    assert old.equals(new)
    assert issubclass(w[0].category, PsaWarning) and w[0].filename == __file__
    with pytest.warns(journeys.DeprecatedArgumentWarning, match=r"top_paths\(n=\.\.\.\)"):
        assert journeys.top_paths(f, level="event_type", n=1).height == 1
    with pytest.warns(
        journeys.DeprecatedArgumentWarning, match="level now defaults to 'event_type'"
    ):
        assert journeys.transitions(f, within="device").equals(new)
    with pytest.raises(
        JourneyError, match=r"transitions: give within= only \(path= is its old name\)"
    ):
        journeys.transitions(f, level="event_type", within="device", path="device")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        journeys.top_paths(f, level="event_type", within="device", top=2)
