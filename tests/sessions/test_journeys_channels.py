"""GA4 default channel grouping (one case per rule of the table) and attribution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from psanalytics import journeys, samples, sessionize
from psanalytics.errors import JourneyError

T = datetime(2024, 3, 20, 12, tzinfo=UTC)

# (utm_source, utm_medium, utm_campaign, referrer host, entry page) -> channel; one or more
# cases for each row of journeys.CHANNEL_RULES, in the table's order.
CASES = [
    ((None, None, None, None, "/"), "Direct"),
    (("google", "cpc", "summer-cross-network", None, "/"), "Cross-network"),
    (("amazon", "cpc", None, None, "/"), "Paid Shopping"),
    (("google", "cpc", "shopping-spring", None, "/"), "Paid Shopping"),
    (("google", "cpc", "brand", None, "/"), "Paid Search"),
    ((None, None, None, "www.google.com", "/?gclid=abc"), "Paid Search"),
    (("facebook", "paid_social", None, None, "/"), "Paid Social"),
    (("youtube", "cpc", None, None, "/"), "Paid Video"),
    (("dv360", "display", None, None, "/"), "Display"),
    (("partner", "cpm", None, None, "/"), "Display"),
    (("newsletter-ads", "ppc", None, None, "/"), "Paid Other"),
    ((None, None, None, "www.ebay.com", "/"), "Organic Shopping"),
    ((None, None, None, "t.co", "/"), "Organic Social"),
    (("forum", "social", None, None, "/"), "Organic Social"),
    ((None, None, None, "m.youtube.com", "/"), "Organic Video"),
    ((None, None, None, "www.google.se", "/"), "Organic Search"),
    ((None, None, None, "search.yahoo.com", "/"), "Organic Search"),
    (("partner", "organic", None, None, "/"), "Organic Search"),
    ((None, None, None, "blog.hikenorth.example", "/"), "Referral"),
    (("newsletter", "email", "spring sale", None, "/"), "Email"),
    (("e-mail", "weekly", None, None, "/"), "Email"),
    (("campfinder", "affiliate", None, None, "/"), "Affiliates"),
    (("spotify", "audio", None, None, "/"), "Audio"),
    (("sms", "text", None, None, "/"), "SMS"),
    (("app", "web-push", None, None, "/"), "Mobile Push Notifications"),
    (("firebase", "inapp", None, None, "/"), "Mobile Push Notifications"),
    (("flyer", "print", None, None, "/"), "Unassigned"),
]


def sessions_of(cases) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "entry_utm_source": s, "entry_utm_medium": m, "entry_utm_campaign": c,
                "entry_referrer_host": r, "entry_page": "https://shop.example" + p,
            }
            for (s, m, c, r, p), _ in cases
        ],
        schema={k: pl.String for k in ("entry_utm_source", "entry_utm_medium",
                                        "entry_utm_campaign", "entry_referrer_host", "entry_page")},
    )  # fmt: skip


def test_every_rule_of_the_grouping_table():
    got = journeys.channel(sessions_of(CASES))["channel"].to_list()
    assert got == [want for _, want in CASES]
    covered = {want for _, want in CASES}
    assert covered == {name for name, _ in journeys.CHANNEL_RULES}


def test_source_and_medium_derivation():
    s = journeys.channel(sessions_of(CASES)).select("source", "medium", "campaign").rows()
    assert s[0] == ("(direct)", "(none)", "(not set)")
    assert s[5] == ("google", "cpc", "(not set)")  # gclid: Google Ads auto-tagging
    assert s[12] == ("t.co", "referral", "(not set)")
    assert s[15] == ("google", "organic", "(not set)")
    assert s[19] == ("newsletter", "email", "spring sale")
    own = journeys.channel(
        sessions_of([((None, None, None, "www.shop.example", "/"), None)]),
        own_hosts=("shop.example",),
    )
    assert own.select("source", "medium", "channel").row(0) == ("(direct)", "(none)", "Direct")


def test_channel_needs_the_full_sessions_table():
    with pytest.raises(JourneyError, match="missing entry_utm_source"):
        journeys.channel(pl.DataFrame({"device_id": ["d"]}).with_columns(
            pl.lit(None, pl.String).alias("entry_utm_medium"),
            pl.lit(None, pl.String).alias("entry_utm_campaign"),
            pl.lit(None, pl.String).alias("entry_referrer_host"),
        ))  # fmt: skip


def touch_sessions(rows) -> pl.DataFrame:
    return pl.DataFrame(
        [{"device_id": d, "start_time": t, "channel": c} for d, t, c in rows],
        schema={
            "device_id": pl.String,
            "start_time": pl.Datetime("ns", "UTC"),
            "channel": pl.String,
        },
    )


def conversions(rows) -> pl.DataFrame:
    return pl.DataFrame(
        [{"DeviceId": d, "EventTime": t, "revenue": r, "currency": c} for d, t, r, c in rows],
        schema={"DeviceId": pl.String, "EventTime": pl.Datetime("ns", "UTC"),
                "revenue": pl.Float64, "currency": pl.String},
    )  # fmt: skip


def credit(df: pl.DataFrame) -> dict:
    return {(r[0], r[1]): (r[2], r[3]) for r in df.rows()}


@pytest.mark.parametrize("model", ["first", "last", "linear", "position"])
def test_lookback_edges(model):
    s = touch_sessions(
        [
            ("d", T - timedelta(days=30), "Email"),
            ("e", T - timedelta(days=30), "Email"),
        ]
    )
    # d's session starts exactly 30 days before: counts; e's starts 1 ns more before: does not
    s = s.with_columns(
        pl.when(pl.col("device_id") == "e").then(pl.col("start_time") - pl.duration(nanoseconds=1))
        .otherwise(pl.col("start_time")).alias("start_time")
    )  # fmt: skip
    c = conversions([("d", T, 100.0, "SEK"), ("e", T, 50.0, "SEK")])
    got = credit(journeys.attribute(c, s, model=model, lookback="30d"))
    assert got == {("Email", "SEK"): (1.0, 100.0), ("(none)", "SEK"): (1.0, 50.0)}


@pytest.mark.parametrize("model", ["first", "last", "linear", "position"])
def test_sessions_after_the_conversion_do_not_count_but_the_same_instant_does(model):
    s = touch_sessions([("d", T, "Email"), ("d", T + timedelta(microseconds=1), "Display")])
    c = conversions([("d", T, 10.0, "EUR")])
    assert credit(journeys.attribute(c, s, model=model)) == {("Email", "EUR"): (1.0, 10.0)}


def test_models_split_credit():
    day = timedelta(days=1)
    s = touch_sessions(
        [
            ("d", T - 4 * day, "Organic Search"),
            ("d", T - 3 * day, "Email"),
            ("d", T - 2 * day, "Display"),
            ("d", T - day, "Direct"),
        ]
    )
    c = conversions([("d", T, 100.0, "SEK")])

    def conv(model, **kw):
        return {k[0]: v[0] for k, v in credit(journeys.attribute(c, s, model=model, **kw)).items()}

    assert conv("first") == {"Organic Search": 1.0}
    assert conv("last") == {"Direct": 1.0}
    assert conv("linear") == {
        "Organic Search": 0.25,
        "Email": 0.25,
        "Display": 0.25,
        "Direct": 0.25,
    }
    assert conv("position") == pytest.approx(
        {"Organic Search": 0.4, "Email": 0.1, "Display": 0.1, "Direct": 0.4}
    )
    assert conv("last", ignore_direct=True) == {"Display": 1.0}
    two = s.filter(pl.col("channel").is_in(["Email", "Display"]))
    got = credit(journeys.attribute(c, two, model="position"))
    assert got == {("Email", "SEK"): (0.5, 50.0), ("Display", "SEK"): (0.5, 50.0)}
    only_direct = s.filter(pl.col("channel") == "Direct")
    assert credit(journeys.attribute(c, only_direct, model="last", ignore_direct=True)) == {
        ("Direct", "SEK"): (1.0, 100.0)
    }


def test_revenue_is_never_summed_across_currencies():
    s = touch_sessions(
        [("a", T - timedelta(hours=1), "Email"), ("b", T - timedelta(hours=1), "Email")]
    )
    c = conversions([("a", T, 100.0, "SEK"), ("b", T, 10.0, "EUR")])
    r = journeys.attribute(c, s, model="last")
    assert r.columns == ["channel", "currency", "conversions", "revenue"]
    assert sorted(r.rows()) == [("Email", "EUR", 1.0, 10.0), ("Email", "SEK", 1.0, 100.0)]
    with pytest.raises(JourneyError, match="conversions have 'revenue' but no 'currency' column"):
        journeys.attribute(c.drop("currency"), s)
    one = journeys.attribute(c.drop("currency"), s, currency=None)
    assert one.rows() == [("Email", 2.0, 110.0)]


def test_orders_and_attribution_on_the_sample():
    e = samples.default_events()
    o = journeys.orders(e)
    assert o.height == e.filter(pl.col("EventType") == "order").height
    assert o["revenue"].null_count() == 0 and set(o["currency"]) == {
        "SEK",
        "NOK",
        "DKK",
        "EUR",
        "GBP",
        "USD",
    }
    s = journeys.channel(sessionize(e).sessions)
    assert s["channel"].n_unique() >= 9  # the sample has traffic from most channels
    for model in ("first", "last", "linear", "position"):
        r = journeys.attribute(o, s, model=model)
        # every order is credited once, whatever the model
        assert r["conversions"].sum() == pytest.approx(o.height)
        by_cur = r.group_by("currency").agg(pl.col("revenue").sum()).sort("currency")
        want = o.group_by("currency").agg(pl.col("revenue").sum()).sort("currency")
        assert by_cur["revenue"].to_list() == pytest.approx(want["revenue"].to_list())
    first = journeys.attribute(o, s, model="first")
    last = journeys.attribute(o, s, model="last")
    assert not first.sort("channel", "currency").equals(last.sort("channel", "currency"))


def user_sessions(rows) -> pl.DataFrame:
    return pl.DataFrame(
        [{"device_id": d, "user_email": u, "start_time": t, "channel": c} for d, u, t, c in rows],
        schema={"device_id": pl.String, "user_email": pl.String,
                "start_time": pl.Datetime("ns", "UTC"), "channel": pl.String},
    )  # fmt: skip


@pytest.mark.parametrize("edge_ns", [0, 1])
def test_user_key_credits_sessions_of_every_stitched_device(edge_ns):
    day = timedelta(days=1)
    s = user_sessions(
        [
            # ann's phone: an e-mail click exactly 30 days (or 30 days + 1 ns) before the order
            ("phone", "ann@x.se", T - 30 * day - timedelta(microseconds=0), "Email"),
            # ann's laptop, where she orders: a display ad the day before
            ("laptop", "ann@x.se", T - day, "Display"),
            # bob's device: never counts for ann
            ("tablet", "bob@x.se", T - 2 * day, "Paid Search"),
            # anonymous devices stay on their own
            ("kiosk", None, T - 3 * day, "Organic Search"),
        ]
    ).with_columns(
        pl.when(pl.col("device_id") == "phone")
        .then(pl.col("start_time") - pl.duration(nanoseconds=edge_ns))
        .otherwise(pl.col("start_time")).alias("start_time")
    )  # fmt: skip
    c = conversions([("laptop", T, 100.0, "SEK"), ("kiosk", T, 5.0, "SEK"), ("new", T, 1.0, "SEK")])

    def by_channel(model, key):
        r = journeys.attribute(c, s, model=model, key=key, lookback="30d")
        return {row[0]: (row[2], row[3]) for row in r.rows()}

    first_touch = "Email" if edge_ns == 0 else "Display"
    assert by_channel("first", "user") == {
        first_touch: (1.0, 100.0), "Organic Search": (1.0, 5.0), "(none)": (1.0, 1.0)
    }  # fmt: skip
    assert by_channel("last", "user")["Display"] == (1.0, 100.0)
    linear = by_channel("linear", "user")
    if edge_ns == 0:
        assert linear["Email"] == (0.5, 50.0) and linear["Display"] == (0.5, 50.0)
    else:
        assert "Email" not in linear and linear["Display"] == (1.0, 100.0)
    # per device, the phone's e-mail click never counts for the laptop's order
    assert by_channel("first", "DeviceId")["Display"] == (1.0, 100.0)
    assert "Email" not in by_channel("linear", "DeviceId")


def test_user_key_needs_the_stitched_column():
    s = touch_sessions([("d", T, "Email")])
    with pytest.raises(JourneyError, match="sessions need the user_email column"):
        journeys.attribute(conversions([("d", T, 1.0, "SEK")]), s, key="user")


def test_user_key_on_the_sample():
    e = samples.default_events()
    s = journeys.channel(sessionize(e).sessions)
    o = journeys.orders(e)
    per_user = journeys.attribute(o, s, model="first", key="user", lookback="90d")
    per_device = journeys.attribute(o, s, model="first", key="DeviceId", lookback="90d")
    # every order is credited once either way; some orders of stitched users find an
    # earlier touch on another device, so the two tables differ
    assert per_user["conversions"].sum() == pytest.approx(o.height)
    none = per_user.filter(pl.col("channel") == "(none)")["conversions"].sum()
    assert none <= per_device.filter(pl.col("channel") == "(none)")["conversions"].sum()
    assert not per_user.sort("channel", "currency").equals(per_device.sort("channel", "currency"))


# One click per row of journeys.AD_NETWORK_RULES (and the Google Ads API's enum names):
# (platform, ad_network_type, creative_format) -> channel.
AD_CASES = [
    (("Google Ads", "Google Search", None), "Paid Search"),
    (("Google Ads", "Google Partners", None), "Paid Search"),
    (("google ads", "SEARCH_PARTNERS", None), "Paid Search"),
    (("Google Ads", "YouTube Videos", None), "Paid Video"),
    (("Google Ads", "YOUTUBE_SEARCH", None), "Paid Video"),
    (("Google Ads", "YOUTUBE", None), "Paid Video"),
    (("Google Ads", "Google Display Network", None), "Display"),
    (("Google Ads", "MIXED", None), "Cross-network"),
    (("Google Ads", "Social", None), "Paid Social"),
    (("Google Ads", "GMAIL", None), "Paid Search"),  # no row: the manual rules (google / cpc)
    (("DV360", None, "Native site square"), "Display"),
    (("DV360", None, "Flipbook"), "Paid Video"),
    (("Display & Video 360", None, "Audio"), "Audio"),
    (("DV360", None, "Publisher hosted"), "Paid Other"),
]


def test_every_row_of_the_ad_network_table():
    ids = [f"c{i}" for i in range(len(AD_CASES))]
    clicks = pl.DataFrame(
        {
            "click_id": ids,
            "platform": [p for (p, _, _), _ in AD_CASES],
            "ad_network_type": [n for (_, n, _), _ in AD_CASES],
            "creative_format": [f for (_, _, f), _ in AD_CASES],
        }
    )
    # every session is tagged google / cpc by its utm and gclid: the manual rules say Paid
    # Search; the platform's own data decides
    sessions = sessions_of(
        [(("google", "cpc", None, None, f"/?gclid={i}"), None) for i in ids]
        + [(("google", "cpc", None, None, "/?gclid=unknown"), None)]
    )
    got = journeys.channel(sessions, clicks=clicks)["channel"].to_list()
    assert got == [want for _, want in AD_CASES] + ["Paid Search"]
    covered = {(p, ch) for p, _, _, ch in journeys.AD_NETWORK_RULES}
    assert covered == {
        ({"google ads": "Google Ads"}.get(p.lower(), "DV360"), want) for (p, _, _), want in AD_CASES
    }
    # every listed value (7 Google Ads network types, 19 DV360 creative formats) is applied
    every = [(p, f, v, ch) for p, f, vs, ch in journeys.AD_NETWORK_RULES for v in vs]
    assert len(every) == 26
    clicks = pl.DataFrame(
        {
            "click_id": [str(i) for i in range(len(every))],
            "platform": [p for p, _, _, _ in every],
            "ad_network_type": [v if f == "ad_network_type" else None for _, f, v, _ in every],
            "creative_format": [v if f == "creative_format" else None for _, f, v, _ in every],
        }
    )
    s = sessions_of([((None, None, None, None, f"/?dclid={i}"), None) for i in range(len(every))])
    assert journeys.channel(s, clicks=clicks)["channel"].to_list() == [ch for *_, ch in every]


def test_dclid_clicks_and_unplaced_clicks():
    clicks = pl.DataFrame(
        {
            "click_id": ["d1", "g2"],
            "platform": ["DV360", "Google Ads"],
            "creative_format": ["Video", None],
        }
    )
    sessions = sessions_of(
        [
            # a DV360 click: the platform says video
            ((None, None, None, None, "/?dclid=d1"), None),
            # an untagged DV360 click the platform does not report: dfa / cpm -> Display
            ((None, None, None, None, "/p?x=1&dclid=zz"), None),
            # a Google Ads click without a network type: manual rules (google / cpc)
            ((None, None, None, None, "/?gclid=g2"), None),
        ]
    )
    got = journeys.channel(sessions, clicks=clicks)
    assert got.select("source", "medium", "channel").rows() == [
        ("dfa", "cpm", "Paid Video"),
        ("dfa", "cpm", "Display"),
        ("google", "cpc", "Paid Search"),
    ]


def test_gclid_wins_over_utm_tags():
    s = sessions_of([(("newsletter", "email", "spring", None, "/?utm_source=x&gclid=abc"), None)])
    got = journeys.channel(s).select("source", "medium", "campaign", "channel").row(0)
    assert got == ("google", "cpc", "spring", "Paid Search")
    # a dclid does not override tags (only an untagged Marketing Platform click is dfa / cpm)
    d = sessions_of([(("newsletter", "email", None, None, "/?dclid=abc"), None)])
    assert journeys.channel(d).select("source", "medium", "channel").row(0) == (
        "newsletter", "email", "Email"
    )  # fmt: skip


def test_clicks_errors():
    s = sessions_of([((None, None, None, None, "/?gclid=a"), None)])
    with pytest.raises(JourneyError, match="clicks need the platform column"):
        journeys.channel(s, clicks=pl.DataFrame({"click_id": ["a"], "ad_network_type": ["x"]}))
    with pytest.raises(JourneyError, match="clicks need an ad_network_type"):
        journeys.channel(s, clicks=pl.DataFrame({"click_id": ["a"], "platform": ["DV360"]}))
    twice = pl.DataFrame(
        {"click_id": ["a", "a"], "platform": ["Google Ads"] * 2,
         "ad_network_type": ["Social", "Google Search"]}
    )  # fmt: skip
    with pytest.raises(
        JourneyError, match=r"click_id 'a' in more than one channel \(Paid Search, Paid Social\)"
    ):
        journeys.channel(s, clicks=twice)


def test_source_categories_whole_host_before_labels():
    cases = [
        # Google's list puts groups.google.com under social: a paid click is Paid Social,
        # although its label "google" is a search engine
        (("groups.google.com", "cpc", None, None, "/"), "Paid Social"),
        (("google.se", "cpc", None, None, "/"), "Paid Search"),
        (("shopping.naver.com", "cpc", None, None, "/"), "Paid Shopping"),
        (("google shopping", "cpc", None, None, "/"), "Paid Shopping"),
        (("music.youtube.com", "cpc", None, None, "/"), "Paid Video"),
        ((None, None, None, "news.google.com", "/"), "Organic Search"),
        ((None, None, None, "l.facebook.com", "/"), "Organic Social"),
        (("netflix", "referral", None, None, "/"), "Organic Video"),
    ]
    assert journeys.channel(sessions_of(cases))["channel"].to_list() == [w for _, w in cases]
