"""Default channel grouping (GA4's rules) and conversion attribution to channels."""

from __future__ import annotations

import polars as pl

from psanalytics.journeys._common import JourneyError, frame

# Site lists. GA4 matches sources against internal lists it publishes as a spreadsheet; these
# are the common entries (a source matches when one of its dot-separated labels, or the
# whole host without "www."/"m."/"l."/"lm.", is in the list).
SEARCH_SITES = frozenset(
    "google bing yahoo duckduckgo baidu yandex ecosia qwant naver seznam ask aol "
    "startpage brave search.brave.com".split()
)
SOCIAL_SITES = frozenset(
    "facebook fb instagram linkedin lnkd.in twitter t.co x.com reddit pinterest tiktok "
    "snapchat tumblr threads.net quora vk weibo whatsapp messenger discord".split()
)
VIDEO_SITES = frozenset("youtube youtu.be vimeo twitch dailymotion wistia".split())
SHOPPING_SITES = frozenset(
    "shopping.google.com amazon ebay etsy shopify walmart alibaba aliexpress idealo "
    "pricerunner prisjakt shopping".split()
)

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


def _site(source: pl.Expr, sites: frozenset[str]) -> pl.Expr:
    host = source.str.replace(r"^(www|m|l|lm|mobile)\.", "")
    labels = host.str.split(".")
    return host.is_in(list(sites)) | labels.list.eval(pl.element().is_in(list(sites))).list.any()


def _grouping(source: pl.Expr, medium: pl.Expr, campaign: pl.Expr) -> pl.Expr:
    s, m, c = source, medium, campaign
    paid = m.str.contains(_PAID)
    shop = _site(s, SHOPPING_SITES) | c.str.contains(_SHOP_CAMPAIGN)
    search, social, video = _site(s, SEARCH_SITES), _site(s, SOCIAL_SITES), _site(s, VIDEO_SITES)
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
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Source, medium and campaign of a session as GA4 derives them (lower-case):

    1. ``utm_source``/``utm_medium`` when tagged (a missing medium is ``"(not set)"``, a
       medium without source gives source ``"(not set)"``);
    2. else a ``gclid`` (Google Ads auto-tagging): ``google`` / ``cpc``;
    3. else a referrer from another site: a search engine gives ``<engine>`` / ``organic``,
       anything else ``<host>`` / ``referral`` (a referrer in ``own_hosts`` is ignored);
    4. else ``(direct)`` / ``(none)``.
    """
    us = utm_source.str.strip_chars().str.to_lowercase().replace("", None)
    um = utm_medium.str.strip_chars().str.to_lowercase().replace("", None)
    uc = utm_campaign.str.strip_chars().str.to_lowercase().replace("", None)
    ref = referrer_host.str.to_lowercase().str.replace(r"^www\.", "").replace("", None)
    if own_hosts:
        own = [h.lower().removeprefix("www.") for h in own_hosts]
        ref = pl.when(ref.is_in(own)).then(None).otherwise(ref)
    has_g = gclid.fill_null("") != ""
    tagged = us.is_not_null() | um.is_not_null()
    engine = ref.str.extract(
        r"(?:^|\.)(google|bing|yahoo|duckduckgo|baidu|yandex|ecosia|qwant|naver|seznam|startpage|brave)\.",
        1,
    )
    source = (
        pl.when(tagged).then(us.fill_null("(not set)"))
        .when(has_g).then(pl.lit("google"))
        .when(engine.is_not_null()).then(engine)
        .when(ref.is_not_null()).then(ref)
        .otherwise(pl.lit("(direct)"))
    )  # fmt: skip
    medium = (
        pl.when(tagged).then(um.fill_null("(not set)"))
        .when(has_g).then(pl.lit("cpc"))
        .when(engine.is_not_null()).then(pl.lit("organic"))
        .when(ref.is_not_null()).then(pl.lit("referral"))
        .otherwise(pl.lit("(none)"))
    )  # fmt: skip
    campaign = (
        pl.when(tagged)
        .then(uc.fill_null("(not set)"))
        .otherwise(pl.when(has_g).then(pl.lit("(not set)")).otherwise(pl.lit("(not set)")))
    )
    return source, medium, campaign


def channel(
    sessions: pl.DataFrame | pl.LazyFrame, *, own_hosts: tuple[str, ...] = ()
) -> pl.DataFrame:
    """The sessions table with ``source``, ``medium``, ``campaign`` and ``channel`` (GA4's
    default channel group, :data:`CHANNEL_RULES`) from each session's entry UTM tags,
    ``gclid`` (on ``entry_page``) and referrer.

    Takes :func:`psanalytics.sessionize`'s ``.sessions`` (``entry_utm_source``,
    ``entry_utm_medium``, ``entry_utm_campaign``, ``entry_referrer_host``, ``entry_page``).
    ``own_hosts``: your own sites, whose referrers are not a source (internal navigation).
    """
    df = frame(sessions)
    need = ["entry_utm_source", "entry_utm_medium", "entry_utm_campaign", "entry_referrer_host"]
    missing = [c for c in need if c not in df.schema]
    if missing:
        raise JourneyError(
            f"channel() needs the sessions table of sessionize() (full columns); missing {', '.join(missing)}"
        )
    gclid = (
        pl.col("entry_page").str.extract(r"[?&]gclid=([^&#]*)", 1)
        if "entry_page" in df.schema
        else pl.lit(None, pl.String)
    )
    s, m, c = source_medium(
        pl.col("entry_utm_source"), pl.col("entry_utm_medium"), pl.col("entry_utm_campaign"),
        pl.col("entry_referrer_host"), gclid, own_hosts,
    )  # fmt: skip
    df = df.with_columns(s.alias("source"), m.alias("medium"), c.alias("campaign"))
    return df.with_columns(
        _grouping(pl.col("source"), pl.col("medium"), pl.col("campaign")).alias("channel")
    )
