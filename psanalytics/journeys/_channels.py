"""Default channel grouping: GA4's rules for ad-platform clicks and for manual traffic."""

from __future__ import annotations

import polars as pl

from psanalytics.journeys._common import JourneyError, frame

# Source categories. GA4 looks each source up in the list of sources and categories Google
# publishes with its "[GA4] Default channel group" page (exact source values). These sets
# hold a selection of that list's entries (host names and bare names) plus a few newer or
# Nordic sites the list version we checked lacks (x.com, threads.net, discord, bsky.app,
# brave, startpage, aliexpress, idealo, pricerunner, prisjakt). A source's category is the
# one listing its whole host (without "www."/"m."/"l."/"lm."/"mobile."), else the one listing
# one of its dot-separated labels: "groups.google.com" is social (listed whole), "google.se"
# search (label "google").
SEARCH_SITES = frozenset(
    "google bing yahoo duckduckgo baidu yandex ecosia ecosia.org qwant naver seznam ask aol "
    "msn so.com sogou rambler daum onet startsiden kvasir eniro yahoo.co.jp 360.cn "
    "centrum.cz dogpile lycos virgilio rakuten news.google.com mail.google.com cse.google.com "
    "startpage brave search.brave.com".split()
)
SOCIAL_SITES = frozenset(
    "facebook fb fb.me instagram ig linkedin lnkd.in twitter t.co x.com reddit pinterest "
    "tiktok snapchat tumblr threads.net quora vk vk.com weibo whatsapp messenger discord "
    "bsky.app t.me line line.me kakao wechat skype medium.com bit.ly tinyurl.com "
    "news.ycombinator.com stackoverflow.com tripadvisor yelp wordpress blogspot blogger "
    "groups.google.com sites.google.com plus.google.com answers.yahoo.com flipboard "
    "slideshare.net xing meetup goodreads".split()
)
VIDEO_SITES = frozenset(
    "youtube youtu.be vimeo twitch dailymotion wistia netflix hulu disneyplus ted youku "
    "iqiyi crackle curiositystream veoh d.tube".split()
)
SHOPPING_SITES = frozenset(
    "igshopping shopping.google.com amazon ebay etsy shopify walmart alibaba "
    "mercadolibre shopzilla stripe shop.app simplycodes.com aliexpress idealo pricerunner "
    "prisjakt shopping".split()
) | {"google shopping"}
_CATEGORIES = (
    ("social", SOCIAL_SITES), ("video", VIDEO_SITES), ("shopping", SHOPPING_SITES),
    ("search", SEARCH_SITES),
)  # fmt: skip

_PAID = r"^(.*cp.*|ppc|retargeting|paid.*)$"
_SHOP_CAMPAIGN = r"^(.*(([^a-df-z]|^)shop|shopping).*)$"
_EMAIL = ("email", "e-mail", "e_mail", "e mail")

#: GA4's default channel group, in the order the rules are tried (first match wins).
#: (channel, rule in words). Source and medium are compared lower-case.
CHANNEL_RULES: tuple[tuple[str, str], ...] = (
    ("Direct", 'source is "(direct)" and medium is "(none)" or "(not set)"'),
    ("Cross-network", 'campaign contains "cross-network"'),
    ("Paid Shopping", f"(source is a shopping site or campaign matches {_SHOP_CAMPAIGN}) and medium matches {_PAID}"),
    ("Paid Search", f"source is a search site and medium matches {_PAID}"),
    ("Paid Social", f"source is a social site and medium matches {_PAID}"),
    ("Paid Video", f"source is a video site and medium matches {_PAID}"),
    ("Display", 'medium is one of "display", "banner", "expandable", "interstitial", "cpm"'),
    ("Paid Other", f"medium matches {_PAID}"),
    ("Organic Shopping", f"source is a shopping site or campaign matches {_SHOP_CAMPAIGN}"),
    ("Organic Social", 'source is a social site or medium is one of "social", "social-network", "social-media", "sm", "social network", "social media"'),
    ("Organic Video", "source is a video site or medium matches ^(.*video.*)$"),
    ("Organic Search", 'source is a search site or medium is "organic"'),
    ("Referral", 'medium is one of "referral", "app", "link"'),
    ("Email", 'source or medium is one of "email", "e-mail", "e_mail", "e mail"'),
    ("Affiliates", 'medium is "affiliate"'),
    ("Audio", 'medium is "audio"'),
    ("SMS", 'source or medium is "sms"'),
    ("Mobile Push Notifications", 'medium ends with "push", or contains "mobile" or "notification", or source is "firebase"'),
    ("Unassigned", "no rule matched"),
)  # fmt: skip


#: GA4's default channel group for clicks an ad platform reports on (its "Google Ads
#: traffic" and "Display & Video 360 traffic" rows): (platform, field, values, channel).
AD_NETWORK_RULES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("Google Ads", "ad_network_type", ("Google Search", "Google Partners"), "Paid Search"),
    ("Google Ads", "ad_network_type", ("YouTube Search", "YouTube Videos"), "Paid Video"),
    ("Google Ads", "ad_network_type", ("Google Display Network",), "Display"),
    ("Google Ads", "ad_network_type", ("Cross-network",), "Cross-network"),
    ("Google Ads", "ad_network_type", ("Social",), "Paid Social"),
    ("DV360", "creative_format", (
        "Standard", "Expandable", "Native site square", "Backdrop",
        "Templated app install interstitial", "Deprecated", "Native app install",
        "Native app install square", "Native site", "Templated app install", "Lightbox",
    ), "Display"),
    ("DV360", "creative_format", ("Native video", "Video", "Templated app install video", "Flipbook"), "Paid Video"),
    ("DV360", "creative_format", ("Audio",), "Audio"),
    ("DV360", "creative_format", ("Publisher hosted", "Tracking", "Unknown"), "Paid Other"),
)  # fmt: skip

#: The Google Ads API's ``AdNetworkType`` names for GA4's ad network types (``YOUTUBE`` is
#: today's name; ``YOUTUBE_SEARCH``/``YOUTUBE_WATCH`` older API versions'). ``GMAIL``,
#: ``DISCOVER``, ``MAPS``, ``GOOGLE_TV`` and ``GOOGLE_OWNED_CHANNELS`` have no row in GA4's
#: table, so those clicks get the manual rules.
GOOGLE_ADS_NETWORK_NAMES = {
    "SEARCH": "Google Search",
    "SEARCH_PARTNERS": "Google Partners",
    "CONTENT": "Google Display Network",
    "YOUTUBE": "YouTube Videos",
    "YOUTUBE_SEARCH": "YouTube Search",
    "YOUTUBE_WATCH": "YouTube Videos",
    "MIXED": "Cross-network",
}

_PLATFORMS = {"google ads": "Google Ads", "dv360": "DV360", "display & video 360": "DV360"}


def _norm(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.String).str.strip_chars().str.to_lowercase()


def _ad_network(clicks: pl.DataFrame) -> pl.DataFrame:
    """``click_id`` -> ``_ad_channel`` for the clicks :data:`AD_NETWORK_RULES` places."""
    for c in ("click_id", "platform"):
        if c not in clicks.schema:
            raise JourneyError(
                f"clicks need the {c} column (and ad_network_type or creative_format)"
            )
    fields = [f for f in ("ad_network_type", "creative_format") if f in clicks.schema]
    if not fields:
        raise JourneyError(
            "clicks need an ad_network_type (Google Ads) or creative_format (DV360) column"
        )
    aliases = {k.lower(): v.lower() for k, v in GOOGLE_ADS_NETWORK_NAMES.items()}
    cols = {
        "ad_network_type": _norm(pl.col("ad_network_type")).replace(aliases)
        if "ad_network_type" in fields
        else pl.lit(None, pl.String),
        "creative_format": _norm(pl.col("creative_format"))
        if "creative_format" in fields
        else pl.lit(None, pl.String),
    }
    platform = _norm(pl.col("platform")).replace_strict(_PLATFORMS, default=None)
    out: pl.Expr = pl.lit(None, pl.String)
    for plat, field, values, name in reversed(AD_NETWORK_RULES):
        hit = (platform == plat) & cols[field].is_in([v.lower() for v in values])
        out = pl.when(hit.fill_null(False)).then(pl.lit(name)).otherwise(out)
    placed = (
        clicks.select(pl.col("click_id").cast(pl.String), out.alias("_ad_channel"))
        .filter(pl.col("click_id").is_not_null() & pl.col("_ad_channel").is_not_null())
        .unique()
    )
    dup = placed.filter(pl.col("click_id").is_duplicated())
    if dup.height:
        raise JourneyError(
            f"clicks place click_id {dup['click_id'][0]!r} in more than one channel "
            f"({', '.join(sorted(str(v) for v in dup['_ad_channel'].unique()))})"
        )
    return placed


def _category(source: pl.Expr) -> pl.Expr:
    """The source's category: the list holding its whole host, else one holding a label."""
    host = source.str.replace(r"^(www|m|l|lm|mobile)\.", "")
    labels = host.str.split(".")
    out: pl.Expr = pl.lit(None, pl.String)
    for name, sites in reversed(_CATEGORIES):
        hit = labels.list.eval(pl.element().is_in(list(sites))).list.any()
        out = pl.when(hit).then(pl.lit(name)).otherwise(out)
    for name, sites in reversed(_CATEGORIES):
        out = pl.when(host.is_in(list(sites))).then(pl.lit(name)).otherwise(out)
    return out


def _grouping(source: pl.Expr, medium: pl.Expr, campaign: pl.Expr) -> pl.Expr:
    s, m, c = source, medium, campaign
    paid = m.str.contains(_PAID)
    cat = _category(s)
    shop = (cat == "shopping") | c.str.contains(_SHOP_CAMPAIGN)
    search, social, video = cat == "search", cat == "social", cat == "video"
    rules = [
        ((s == "(direct)") & m.is_in(["(none)", "(not set)"]), "Direct"),
        (c.str.contains("cross-network", literal=True), "Cross-network"),
        (shop & paid, "Paid Shopping"),
        (search & paid, "Paid Search"),
        (social & paid, "Paid Social"),
        (video & paid, "Paid Video"),
        (m.is_in(["display", "banner", "expandable", "interstitial", "cpm"]), "Display"),
        (paid, "Paid Other"),
        (shop, "Organic Shopping"),
        (social | m.is_in(["social", "social-network", "social-media", "sm", "social network", "social media"]), "Organic Social"),
        (video | m.str.contains(r"^(.*video.*)$"), "Organic Video"),
        (search | (m == "organic"), "Organic Search"),
        (m.is_in(["referral", "app", "link"]), "Referral"),
        (s.is_in(list(_EMAIL)) | m.is_in(list(_EMAIL)), "Email"),
        (m == "affiliate", "Affiliates"),
        (m == "audio", "Audio"),
        ((s == "sms") | (m == "sms"), "SMS"),
        (m.str.ends_with("push") | m.str.contains("mobile", literal=True) | m.str.contains("notification", literal=True) | (s == "firebase"), "Mobile Push Notifications"),
    ]  # fmt: skip
    out: pl.Expr = pl.lit("Unassigned")
    for cond, name in reversed(rules):
        out = pl.when(cond.fill_null(False)).then(pl.lit(name)).otherwise(out)
    return out


def source_medium(
    utm_source: pl.Expr,
    utm_medium: pl.Expr,
    utm_campaign: pl.Expr,
    referrer_host: pl.Expr,
    gclid: pl.Expr,
    own_hosts: tuple[str, ...] = (),
    dclid: pl.Expr | None = None,
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Source, medium and campaign of a session as GA4 derives them (lower-case):

    1. a ``gclid`` (Google Ads auto-tagging): ``google`` / ``cpc``, even when UTM tags are
       there too (Google: "if you use manual tagging and auto-tagging together, the source,
       medium ... use the auto-tagged values");
    2. else ``utm_source``/``utm_medium`` when tagged (a missing medium is ``"(not set)"``, a
       medium without source gives source ``"(not set)"``);
    3. else a ``dclid`` (Display & Video 360 / Campaign Manager 360 click id) without UTM
       tags: ``dfa`` / ``cpm`` (Google Analytics' name for an untagged Marketing Platform
       click);
    4. else a referrer from another site: a search engine gives ``<engine>`` / ``organic``,
       anything else ``<host>`` / ``referral`` (a referrer in ``own_hosts`` is ignored);
    5. else ``(direct)`` / ``(none)``.

    The campaign is ``utm_campaign`` when tagged, else ``"(not set)"`` (GA4 reads an
    auto-tagged click's campaign from the linked ad account, which events do not carry).
    """
    us = utm_source.str.strip_chars().str.to_lowercase().replace("", None)
    um = utm_medium.str.strip_chars().str.to_lowercase().replace("", None)
    uc = utm_campaign.str.strip_chars().str.to_lowercase().replace("", None)
    ref = referrer_host.str.to_lowercase().str.replace(r"^www\.", "").replace("", None)
    if own_hosts:
        own = [h.lower().removeprefix("www.") for h in own_hosts]
        ref = pl.when(ref.is_in(own)).then(None).otherwise(ref)
    has_g = gclid.fill_null("") != ""
    has_d = (dclid.fill_null("") != "") if dclid is not None else pl.lit(False)
    tagged = us.is_not_null() | um.is_not_null()
    engine = ref.str.extract(
        r"(?:^|\.)(google|bing|yahoo|duckduckgo|baidu|yandex|ecosia|qwant|naver|seznam|startpage|brave)\.",
        1,
    )
    source = (
        pl.when(has_g).then(pl.lit("google"))
        .when(tagged).then(us.fill_null("(not set)"))
        .when(has_d).then(pl.lit("dfa"))
        .when(engine.is_not_null()).then(engine)
        .when(ref.is_not_null()).then(ref)
        .otherwise(pl.lit("(direct)"))
    )  # fmt: skip
    medium = (
        pl.when(has_g).then(pl.lit("cpc"))
        .when(tagged).then(um.fill_null("(not set)"))
        .when(has_d).then(pl.lit("cpm"))
        .when(engine.is_not_null()).then(pl.lit("organic"))
        .when(ref.is_not_null()).then(pl.lit("referral"))
        .otherwise(pl.lit("(none)"))
    )  # fmt: skip
    campaign = uc.fill_null("(not set)")
    return source, medium, campaign


def _click_id(name: str) -> pl.Expr:
    return pl.col("entry_page").str.extract(rf"[?&]{name}=([^&#]*)", 1)


def channel(
    sessions: pl.DataFrame | pl.LazyFrame,
    *,
    own_hosts: tuple[str, ...] = (),
    clicks: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """The sessions table with ``source``, ``medium``, ``campaign`` and ``channel`` (GA4's
    default channel group) from each session's entry UTM tags, click ids (``gclid``,
    ``dclid`` on ``entry_page``) and referrer.

    Takes :func:`psanalytics.sessionize`'s ``.sessions`` (``entry_utm_source``,
    ``entry_utm_medium``, ``entry_utm_campaign``, ``entry_referrer_host``, ``entry_page``).
    ``own_hosts``: your own sites, whose referrers are not a source (internal navigation).

    ``clicks``: what the ad platforms say about their clicks, for GA4's ad-network rules
    (:data:`AD_NETWORK_RULES`, tried first): ``click_id`` (the ``gclid`` or ``dclid``),
    ``platform`` (``"Google Ads"`` or ``"DV360"``), and ``ad_network_type`` (Google Ads:
    ``"Google Search"``, ``"YouTube Videos"``... or the Google Ads API's ``SEARCH``,
    ``YOUTUBE_WATCH``...) and/or ``creative_format`` (DV360: ``"Video"``, ``"Audio"``...). A
    click the table does not place, and every session without a known click, gets the
    manual-traffic rules (:data:`CHANNEL_RULES`).
    """
    df = frame(sessions)
    need = ["entry_utm_source", "entry_utm_medium", "entry_utm_campaign", "entry_referrer_host"]
    missing = [c for c in need if c not in df.schema]
    if missing:
        raise JourneyError(
            f"channel() needs the sessions table of sessionize() (full columns); missing {', '.join(missing)}"
        )
    has_page = "entry_page" in df.schema
    gclid = _click_id("gclid") if has_page else pl.lit(None, pl.String)
    dclid = _click_id("dclid") if has_page else pl.lit(None, pl.String)
    s, m, c = source_medium(
        pl.col("entry_utm_source"), pl.col("entry_utm_medium"), pl.col("entry_utm_campaign"),
        pl.col("entry_referrer_host"), gclid, own_hosts, dclid,
    )  # fmt: skip
    df = df.with_columns(s.alias("source"), m.alias("medium"), c.alias("campaign"))
    manual = _grouping(pl.col("source"), pl.col("medium"), pl.col("campaign"))
    if clicks is None:
        return df.with_columns(manual.alias("channel"))
    placed = _ad_network(frame(clicks))
    df = df.with_columns(pl.coalesce(gclid, dclid).alias("_click"))
    df = df.join(placed, left_on="_click", right_on="click_id", how="left", maintain_order="left")
    return df.with_columns(pl.coalesce("_ad_channel", manual).alias("channel")).drop(
        "_click", "_ad_channel"
    )
