"""Deterministic synthetic Profile Store track events that look like a real shop's traffic.

``generate(n_events, ...)`` returns a canonical events frame (see :mod:`psanalytics.schema`)
sorted by ``EventTime``. Everything is drawn from one ``numpy`` generator seeded with
``seed``, so the same arguments always give the same frame, byte for byte.

What the data looks like (the model, in short):

* **Devices** (``DeviceId`` GUIDs, the ``_madid`` cookie) get a Zipf-skewed share of the
  events (Zipf-Mandelbrot, exponent 1): most devices have a handful of events, the head has
  thousands.
  The first ``max(2, n_devices // 2000)`` ranks are **bot-like**: they fire around the clock
  (no diurnal cycle, seconds apart, crawl-like page mix, datacenter IPs, never logged in).
* **Visits**: human devices split their events into visits (geometric, ~6 events). Visits
  start on a diurnal cycle in the device's local time (low at night, peaks at lunch and in
  the evening); inside a visit events are seconds to minutes apart (log-normal).
* **Navigation**: a Markov chain per visit walks home -> category -> product -> basket ->
  checkout -> order with drop-off at each step, plus searches (``epiSearch``), content
  pages (``epiPageView``), wishlists and block events (``epiVideoBlockView``,
  ``epiHeroBlockClick``). Block events are sent together with their page view, often with
  exactly the same ``EventTime``; some events fall in the same millisecond as the one
  before, so ties in ``EventTime`` always occur.
* **Payloads** are JSON text per event type as in the API spec (``epi{contentGuid,
  language, siteId, ancestors}``, product reference/price/currency, basket lines,
  orders with a unique order id, total, currency and lines).
* **Places**: each device has a country (market: language, currency, URL prefix), a city,
  and a home and a mobile IP (IPv4 or IPv6) drawn from that country's address blocks.
* **People**: about a fifth of human devices log in from some visit on (``User.Email`` /
  ``User.Name``); users own one to several devices; a few devices are shared (a second
  user logs in later).
* **SessionId** behaves like the EPiServer session cookie (30 minutes, renewed on every
  request): a new id after more than 30 minutes without a *tracked* event, except that
  sometimes an untracked request kept the cookie alive across a longer gap.
* **Traffic sources**: every human visit has one (:data:`_SOURCES`), drawn from a separate
  generator so the other columns do not depend on it: direct, organic search (a search
  engine referrer), paid search (``utm_medium=cpc`` and a ``gclid``, sometimes a ``gclid``
  alone), e-mail, organic and paid social, referral, affiliate, display and video. The
  visit's entry event carries them: the ``utm_*``/``gclid`` query string on its ``PageUri``
  (block events on that page show the same URI) and ``"referrer"`` first in its
  ``Payload``. First visits come more from search and ads, returning visits more often
  direct or from e-mail, so first-touch and last-touch attribution differ.
* **Scopes**: most devices track into ``default``; a few into ``b2b`` or ``outlet``.
* **E-mail campaigns** (``campaigns=N``; off by default, so the committed sample is
  unchanged): N mailings to the known users, as the vendor's Campaign integration tracks
  them: ``epiCampaignMailingtouser``, ``epiCampaignOpen``, ``epiCampaignClick`` with the
  recipient's e-mail as ``DeviceId`` and ``Payload.epi.campaign.mailingId``
  (:func:`campaign_events`, its own generator: every other event is unchanged).
  :func:`real_shaped` adds three by default.
* ``burst=True`` adds a flash-sale/bot flood: 12,000 extra events inside one minute on a
  10 ms grid, so many events share exactly the same timestamp.

``EventTime`` values are multiples of 100 ns, like the API's 7 fractional digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from psanalytics import schema
from psanalytics._files import read_bytes
from psanalytics.errors import ArgumentError

__all__ = [
    "BURST_EVENTS",
    "campaign_events",
    "DEFAULT_DAYS",
    "DEFAULT_N_EVENTS",
    "DEFAULT_SEED",
    "DEFAULT_START",
    "default_events",
    "default_sample_path",
    "generate",
    "real_shaped",
]

#: Default first instant of generated data (a Monday, midnight UTC). Fixed, never "now".
DEFAULT_START = datetime(2024, 3, 4, tzinfo=UTC)
#: Arguments that produced ``data/samples/track-events.ndjson.gz``.
DEFAULT_N_EVENTS = 50_000
DEFAULT_DAYS = 14
DEFAULT_SEED = 20240304
#: Number of extra events ``burst=True`` puts into a single minute.
BURST_EVENTS = 12_000

_NS = 1_000_000_000
_TICK = 100  # ns: the API's 7 fractional digits

# --------------------------------------------------------------------------- world tables


@dataclass(frozen=True)
class _Market:
    country: str
    lang: str
    culture: str
    currency: str
    rate: float  # price multiplier from EUR
    tz: int  # hours from UTC (no DST: good enough for a diurnal cycle)
    weight: float
    cities: tuple[str, ...]
    v4: tuple[int, ...]  # first octets of the country's IPv4 blocks
    v6: str  # an IPv6 /32 prefix used for the country


_MARKETS: tuple[_Market, ...] = (
    _Market("SE", "sv", "sv-se", "SEK", 11.5, 1, 0.34,
            ("Stockholm", "Gothenburg", "Malmo", "Uppsala", "Vasteras", "Orebro"),
            (81, 83, 90, 94), "2a02:aa1"),
    _Market("NO", "nb", "nb-no", "NOK", 11.7, 1, 0.08,
            ("Oslo", "Bergen", "Trondheim", "Stavanger"), (84, 88, 109), "2a01:799"),
    _Market("DK", "da", "da-dk", "DKK", 7.46, 1, 0.07,
            ("Copenhagen", "Aarhus", "Odense"), (80, 87, 130), "2a05:f6c7"),
    _Market("FI", "fi", "fi-fi", "EUR", 1.0, 2, 0.06,
            ("Helsinki", "Espoo", "Tampere", "Turku"), (85, 91, 193), "2001:14b8"),
    _Market("DE", "de", "de-de", "EUR", 1.0, 1, 0.16,
            ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt"), (77, 79, 93, 217), "2003:e6"),
    _Market("NL", "nl", "nl-nl", "EUR", 1.0, 1, 0.06,
            ("Amsterdam", "Rotterdam", "Utrecht"), (62, 145, 213), "2a02:a44"),
    _Market("GB", "en", "en-gb", "GBP", 0.86, 0, 0.13,
            ("London", "Manchester", "Birmingham", "Leeds", "Bristol"), (51, 86, 92), "2a00:23c4"),
    _Market("US", "en", "en-us", "USD", 1.09, -5, 0.10,
            ("New York", "Chicago", "Seattle", "Austin", "Boston"), (24, 67, 98, 173), "2600:1700"),
)
_BOT_V4 = (34, 35, 52, 54, 66, 157)  # cloud / crawler ranges
_BOT_V6 = "2a03:2880"
_BOT_MARKET = 7  # bots browse the en-us site

_SITE_ID = "3f0a6e2c-9c1e-4b4e-8f55-2a6d0c1e7b10"
_HOST = "https://www.northwind-outdoor.com"

_CATEGORIES = (
    "Tents", "Sleeping bags", "Backpacks", "Jackets", "Trousers", "Boots", "Shoes",
    "Base layers", "Fleece", "Gloves", "Hats", "Headlamps", "Stoves", "Cookware",
    "Water bottles", "Trekking poles", "Climbing", "Ski touring", "Kids", "Maps",
    "Navigation", "First aid", "Bags", "Accessories",
)
_PER_CATEGORY = 25
_N_PRODUCTS = len(_CATEGORIES) * _PER_CATEGORY
_ADJ = ("Alpine", "Trail", "Summit", "Nordic", "Storm", "Ridge", "Glacier", "Forest",
        "Coastal", "Arctic", "Canyon", "Meadow", "Granite")
_N_ARTICLES = 150
_ARTICLE_TOPICS = ("Guide", "Review", "Story", "Checklist", "How to", "Buying guide")
_KEYWORDS = tuple(
    f"{a.lower()} {c.lower()}" for c in _CATEGORIES for a in _ADJ[:6]
) + tuple(c.lower() for c in _CATEGORIES) + ("gore-tex", "sale", "gift card", "returns",
                                             "size guide", "store", "opening hours")
_N_KEYWORDS = len(_KEYWORDS)
_VIDEOS = ("Pitching the Ridge 2 tent", "Layering 101", "Packing a 40 l backpack",
           "Boot fitting", "Stove safety", "Winter camping")
_HEROES = ("Spring sale", "New arrivals", "Member days", "Free shipping", "Ski season")
_FIRST = ("Anna", "Erik", "Maria", "Lars", "Karin", "Johan", "Eva", "Per", "Emma", "Nils",
          "Sofia", "Oskar", "Lena", "Jonas", "Ida", "Mikael", "Sara", "Anders", "Julia",
          "Thomas", "Hannah", "Lukas", "Laura", "Felix", "Olivia", "James", "Emily", "Noah",
          "Mia", "Liam", "Sanna", "Mats")
_LAST = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsen",
         "Hansen", "Jensen", "Virtanen", "Muller", "Schmidt", "de Vries", "Smith", "Brown",
         "Taylor", "Wilson", "Johnson", "Lindqvist", "Berg", "Holm", "Lund", "Strand")
_DOMAINS = ("example.com", "mail.example.net", "example.org", "corp.example.se")

# Event kinds (chain states). Order matters: indexes are used in the tables below.
_HOME, _CAT, _PROD, _BASKET, _CHECKOUT, _ORDER, _SEARCH, _ARTICLE, _WISH, _VIDEO, _HERO = range(11)
_KIND_TYPES = ("home", "category", "product", "basket", "checkout", "order", "epiSearch",
               "epiPageView", "wishlist", "epiVideoBlockView", "epiHeroBlockClick")
_N_KINDS = len(_KIND_TYPES)

# Entry state of a visit, and the transition matrix (rows: from, columns: to).
_ENTRY = np.array([0.36, 0.20, 0.20, 0.0, 0.0, 0.0, 0.10, 0.14, 0.0, 0.0, 0.0])
_TRANS = np.array(
    [  # home cat  prod  bask  chk   ord   srch  art   wish  video hero
        [0.02, 0.42, 0.14, 0.00, 0.00, 0.00, 0.14, 0.10, 0.00, 0.06, 0.12],  # home
        [0.06, 0.14, 0.62, 0.00, 0.00, 0.00, 0.08, 0.04, 0.00, 0.02, 0.04],  # category
        [0.04, 0.18, 0.38, 0.16, 0.00, 0.00, 0.08, 0.04, 0.08, 0.04, 0.00],  # product
        [0.02, 0.08, 0.30, 0.06, 0.50, 0.00, 0.04, 0.00, 0.00, 0.00, 0.00],  # basket
        [0.00, 0.02, 0.08, 0.20, 0.06, 0.64, 0.00, 0.00, 0.00, 0.00, 0.00],  # checkout
        [0.50, 0.14, 0.10, 0.00, 0.00, 0.00, 0.06, 0.20, 0.00, 0.00, 0.00],  # order
        [0.02, 0.14, 0.62, 0.00, 0.00, 0.00, 0.16, 0.06, 0.00, 0.00, 0.00],  # search
        [0.18, 0.16, 0.14, 0.00, 0.00, 0.00, 0.06, 0.34, 0.00, 0.12, 0.00],  # article
        [0.06, 0.24, 0.50, 0.10, 0.00, 0.00, 0.10, 0.00, 0.00, 0.00, 0.00],  # wishlist
        [0.16, 0.26, 0.24, 0.00, 0.00, 0.00, 0.06, 0.28, 0.00, 0.00, 0.00],  # video
        [0.04, 0.50, 0.40, 0.00, 0.00, 0.00, 0.06, 0.00, 0.00, 0.00, 0.00],  # hero
    ]
)
_TRANS = _TRANS / _TRANS.sum(axis=1, keepdims=True)
_TRANS_CUM = np.cumsum(_TRANS, axis=1)
_ENTRY_CUM = np.cumsum(_ENTRY / _ENTRY.sum())
_BOT_KINDS = np.array([_CAT, _PROD, _ARTICLE, _HOME, _SEARCH])
_BOT_P = np.array([0.22, 0.50, 0.22, 0.04, 0.02])

# Traffic sources of a visit (entry page query string and referrer), drawn from their own
# generator so that every other column is the same as without them. First visits come
# more often from search and ads, returning visits more often direct or from e-mail, so
# first-touch and last-touch attribution differ. Rows: (name, weight of a first visit,
# weight of a returning visit, utm query or "", referrers).
_SOURCES: tuple[tuple[str, float, float, str, tuple[str, ...]], ...] = (
    ("direct", 0.22, 0.40, "", ()),
    ("organic_search", 0.27, 0.17, "",
     ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
      "https://www.google.se/", "https://search.yahoo.com/")),
    ("paid_search", 0.12, 0.06, "utm_source=google&utm_medium=cpc&utm_campaign=brand-{m}",
     ("https://www.google.com/",)),
    ("gclid_only", 0.03, 0.01, "", ("https://www.google.com/",)),
    ("email", 0.04, 0.14, "utm_source=newsletter&utm_medium=email&utm_campaign=spring+sale",
     ()),
    ("organic_social", 0.08, 0.05, "",
     ("https://www.facebook.com/", "https://l.instagram.com/", "https://t.co/",
      "https://www.linkedin.com/", "https://www.reddit.com/")),
    ("paid_social", 0.06, 0.03,
     "utm_source=facebook&utm_medium=paid_social&utm_campaign=spring+sale",
     ("https://m.facebook.com/",)),
    ("referral", 0.07, 0.05, "",
     ("https://www.outdoorgearlab.example/", "https://forum.trailtalk.example/",
      "https://blog.hikenorth.example/")),
    ("affiliate", 0.04, 0.03, "utm_source=campfinder&utm_medium=affiliate&utm_campaign=partner",
     ("https://campfinder.example/",)),
    ("display", 0.04, 0.04, "utm_source=dv360&utm_medium=display&utm_campaign=retargeting",
     ()),
    ("organic_video", 0.03, 0.02, "", ("https://www.youtube.com/",)),
)

# Local-time diurnal weights (hour 0..23): quiet nights, lunch bump, evening peak.
_DIURNAL = np.array([1.2, 0.7, 0.45, 0.35, 0.35, 0.5, 1.0, 2.0, 3.0, 3.6, 3.9, 4.2, 5.0,
                     4.8, 4.2, 4.1, 4.3, 4.8, 5.6, 6.4, 6.8, 6.0, 4.2, 2.4])
_DIURNAL_CUM = np.cumsum(_DIURNAL / _DIURNAL.sum())


# --------------------------------------------------------------------------- helpers


def _zipf_p(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** a
    return w / w.sum()


def _draw(rng: np.random.Generator, cum: np.ndarray, size: int) -> np.ndarray:
    """Inverse-CDF draw of indexes for a cumulative distribution (vectorised)."""
    idx = np.searchsorted(cum, rng.random(size), side="right")
    return np.minimum(idx, len(cum) - 1)


_HEX2 = np.array(
    [int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)], dtype=np.uint16
)


def _guids(rng: np.random.Generator, n: int) -> pl.Series:
    """``n`` random version-4 GUID strings, built without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = _HEX2[raw].view(np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8] = hexed[:, 0:8]
    out[:, 9:13] = hexed[:, 8:12]
    out[:, 14:18] = hexed[:, 12:16]
    out[:, 19:23] = hexed[:, 16:20]
    out[:, 24:36] = hexed[:, 20:32]
    offsets = np.arange(n + 1, dtype=np.int64) * 36
    arr = pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.reshape(-1))]
    )
    return pl.Series(pl.from_arrow(arr)).cast(pl.String)


def _json(obj: object) -> str:
    import orjson

    return orjson.dumps(obj).decode()


def _guid_from(rng: np.random.Generator) -> str:
    b = bytearray(rng.integers(0, 256, size=16, dtype=np.uint8).tobytes())
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass
class _Catalog:
    """Per (market, page) lookup tables: EventType, Value, PageUri, PageTitle, Payload."""

    etype: list[str]
    value: list[str]
    uri: list[str]
    title: list[str]
    payload: list[str | None]
    # offsets
    per_market: int
    off: dict[int, int]
    basket_total: np.ndarray  # (markets, products*2) totals (in market currency)
    basket_lines: list[list[str]]  # [market][basket] JSON text of lines


def _price_eur(p: int) -> float:
    # Deterministic, varied prices: 9.9 .. ~600 EUR
    base = 9.9 + ((p * 7919) % 997) / 997 * 250 * (1 + (p % _PER_CATEGORY) / 24)
    return round(base, 1)


def _local_price(eur: float, m: _Market) -> float | int:
    v = eur * m.rate
    if m.currency in ("SEK", "NOK", "DKK"):
        return int(v) // 10 * 10 + 9  # whole kronor, written as JSON integers
    return round(int(v) + 0.95, 2)


def _num(x: float) -> float | int:
    """A JSON number without a redundant ``.0`` (so every JSON reader agrees on its text)."""
    return int(x) if float(x).is_integer() else float(x)


@lru_cache(maxsize=1)
def _catalog() -> _Catalog:
    rng = np.random.default_rng(7)  # the catalogue is the same for every seed
    cat_guid = [_guid_from(rng) for _ in _CATEGORIES]
    prod_guid = [_guid_from(rng) for _ in range(_N_PRODUCTS)]
    art_guid = [_guid_from(rng) for _ in range(_N_ARTICLES)]
    home_guid = _guid_from(rng)
    video_guid = [_guid_from(rng) for _ in _VIDEOS]
    hero_guid = [_guid_from(rng) for _ in _HEROES]
    root = "1"
    start_page = "5"

    etype: list[str] = []
    value: list[str] = []
    uri: list[str] = []
    title: list[str] = []
    payload: list[str | None] = []
    off: dict[int, int] = {}
    basket_total = np.zeros((len(_MARKETS), _N_PRODUCTS * 2))
    basket_lines: list[list[str]] = []

    def add(kind: int, v: str, u: str, t: str, p: object) -> None:
        etype.append(_KIND_TYPES[kind])
        value.append(v)
        uri.append(u)
        title.append(t)
        payload.append(None if p is None else _json(p))

    def prod_name(p: int) -> str:
        c = p // _PER_CATEGORY
        return f"{_ADJ[p % len(_ADJ)]} {_CATEGORIES[c].rstrip('s')} {100 + p}"

    for mi, m in enumerate(_MARKETS):
        base = f"{_HOST}/{m.culture}"
        start = len(etype)

        def epi(guid: str, ancestors: list[str], m: _Market = m) -> dict[str, object]:
            return {"contentGuid": guid, "language": m.lang, "siteId": _SITE_ID,
                    "ancestors": ancestors}

        off[_HOME] = len(etype) - start
        add(_HOME, "Visited the start page.", f"{base}/", "Northwind Outdoor",
            {"epi": epi(home_guid, [root]), "name": "Start page", "contentLink": start_page})
        off[_CAT] = len(etype) - start
        for ci, cname in enumerate(_CATEGORIES):
            slug = cname.lower().replace(" ", "-")
            add(_CAT, f"Viewed category {cname}", f"{base}/shop/{slug}/",
                f"{cname} | Northwind Outdoor",
                {"epi": epi(cat_guid[ci], [root, start_page]),
                 "category": {"code": f"CAT-{ci + 1:03d}", "name": cname}})
        off[_PROD] = len(etype) - start
        for p in range(_N_PRODUCTS):
            ci = p // _PER_CATEGORY
            slug = _CATEGORIES[ci].lower().replace(" ", "-")
            name = prod_name(p)
            price = _local_price(_price_eur(p), m)
            add(_PROD, f"Viewed product {name}",
                f"{base}/shop/{slug}/{name.lower().replace(' ', '-')}/",
                f"{name} | Northwind Outdoor",
                {"epi": epi(prod_guid[p], [root, start_page, cat_guid[ci]]),
                 "product": {"refCode": f"P-{10000 + p}", "name": name, "price": price,
                             "currency": m.currency}})
        # Baskets: two variants per product (alone, or with a companion product).
        off[_BASKET] = len(etype) - start
        lines_m: list[str] = []
        for b in range(_N_PRODUCTS * 2):
            p = b // 2
            lines = [{"refCode": f"P-{10000 + p}", "qty": 1 + (p % 3 == 0),
                      "price": _local_price(_price_eur(p), m)}]
            if b % 2:
                q = (p * 31 + 7) % _N_PRODUCTS
                lines.append({"refCode": f"P-{10000 + q}", "qty": 1,
                              "price": _local_price(_price_eur(q), m)})
            total = _num(round(sum(x["qty"] * x["price"] for x in lines), 2))  # type: ignore[operator]
            basket_total[mi, b] = total
            lines_m.append(_json(lines))
            add(_BASKET, f"Added {len(lines)} line(s) to the basket", f"{base}/basket/",
                "Basket | Northwind Outdoor",
                {"lines": lines, "total": total, "currency": m.currency})
        basket_lines.append(lines_m)
        off[_CHECKOUT] = len(etype) - start
        for b in range(_N_PRODUCTS * 2):
            add(_CHECKOUT, "Started checkout", f"{base}/checkout/",
                "Checkout | Northwind Outdoor",
                {"step": "delivery", "total": _num(basket_total[mi, b]), "currency": m.currency,
                 "lines": 1 + b % 2})
        off[_ORDER] = len(etype) - start  # payload and value filled per event
        add(_ORDER, "", f"{base}/checkout/confirmation/", "Thank you | Northwind Outdoor", None)
        off[_SEARCH] = len(etype) - start
        for kw in _KEYWORDS:
            add(_SEARCH, f"Searched {kw}", f"{base}/search/?q={kw.replace(' ', '+')}",
                f"Search: {kw} | Northwind Outdoor",
                {"epi": {"language": m.lang, "siteId": _SITE_ID}, "keyword": kw,
                 "hits": (len(kw) * 37) % 120})
        off[_ARTICLE] = len(etype) - start
        for a in range(_N_ARTICLES):
            topic = _ARTICLE_TOPICS[a % len(_ARTICLE_TOPICS)]
            subj = _CATEGORIES[(a * 7) % len(_CATEGORIES)].lower()
            t = f"{topic}: {subj} #{a + 1}"
            add(_ARTICLE, f"Viewed {t}", f"{base}/inspiration/{a + 1}-{subj.replace(' ', '-')}/",
                f"{t} | Northwind Outdoor",
                {"epi": epi(art_guid[a], [root, start_page, "17"])})
        off[_WISH] = len(etype) - start
        for p in range(_N_PRODUCTS):
            name = prod_name(p)
            add(_WISH, f"Added {name} to the wishlist", f"{base}/account/wishlist/",
                "Wishlist | Northwind Outdoor",
                {"product": {"refCode": f"P-{10000 + p}", "name": name}})
        off[_VIDEO] = len(etype) - start
        for vi, v in enumerate(_VIDEOS):
            add(_VIDEO, f"Watched video {v}", "", "",
                {"epi": epi(video_guid[vi], [root]), "block": {"name": v, "type": "VideoBlock"},
                 "progress": 25 * (1 + vi % 4)})
        off[_HERO] = len(etype) - start
        for hi, h in enumerate(_HEROES):
            add(_HERO, f"Clicked hero {h}", "", "",
                {"epi": epi(hero_guid[hi], [root]), "block": {"name": h, "type": "HeroBlock"},
                 "target": f"{base}/campaign/{h.lower().replace(' ', '-')}/"})
        per_market = len(etype) - start
    return _Catalog(etype, value, uri, title, payload, per_market, off, basket_total,
                    basket_lines)


# --------------------------------------------------------------------------- generator


def _segment_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean mask of rows where a run of equal keys starts."""
    new = np.empty(len(keys), dtype=bool)
    if len(keys):
        new[0] = True
        new[1:] = keys[1:] != keys[:-1]
    return new


def _visit_sources(
    seed: int, visit_no: np.ndarray, bot: np.ndarray, market: np.ndarray
) -> tuple[np.ndarray, list[str], list[str]]:
    """Per visit: source index into :data:`_SOURCES`, utm query ("" for none) and referrer."""
    rng = np.random.default_rng([seed, 0x5EC])  # its own stream: other columns unchanged
    nv = len(visit_no)
    w_first = np.array([s[1] for s in _SOURCES])
    w_ret = np.array([s[2] for s in _SOURCES])
    u = rng.random(nv)
    src = np.where(
        visit_no == 0,
        np.searchsorted(np.cumsum(w_first / w_first.sum()), u, side="right"),
        np.searchsorted(np.cumsum(w_ret / w_ret.sum()), u, side="right"),
    )
    src = np.minimum(src, len(_SOURCES) - 1)
    src[bot] = 0  # crawlers arrive direct
    pick = rng.integers(0, 1 << 30, nv)
    gclid = rng.integers(0, 1 << 62, nv)
    queries: list[str] = [""] * nv
    refs: list[str] = [""] * nv
    for v in np.flatnonzero(src).tolist():
        name, _, _, query, referrers = _SOURCES[src[v]]
        if query:
            queries[v] = query.replace("{m}", _MARKETS[market[v]].country.lower())
        if name in ("paid_search", "gclid_only"):
            g = f"gclid=Cj0KCQ{int(gclid[v]):016x}"
            queries[v] = f"{queries[v]}&{g}" if queries[v] else g
        if referrers:
            refs[v] = referrers[int(pick[v]) % len(referrers)]
    return src, queries, refs


def _add_sources(
    frame: pl.DataFrame,
    page_visit: np.ndarray,
    entry_visit: np.ndarray,
    queries: list[str],
    refs: list[str],
) -> pl.DataFrame:
    """Append each visit's query string to the ``PageUri`` of its entry page (and the block
    events on it), and put ``"referrer"`` first in the entry event's ``Payload``."""
    q = pl.Series(queries + [""], dtype=pl.String)
    r = pl.Series(refs + [""], dtype=pl.String)
    nv = len(queries)
    suffix = q.gather(pl.Series(np.where(page_visit >= 0, page_visit, nv)))
    ref = r.gather(pl.Series(np.where(entry_visit >= 0, entry_visit, nv)))
    uri = pl.col("PageUri")
    return frame.with_columns(
        pl.when(suffix != "")
        .then(
            pl.concat_str(
                [uri, pl.when(uri.str.contains("?", literal=True)).then(pl.lit("&"))
                 .otherwise(pl.lit("?")), suffix]
            )
        )
        .otherwise(uri)
        .alias("PageUri"),
        pl.when((ref != "") & pl.col("Payload").str.starts_with("{"))
        .then(
            pl.concat_str(
                [pl.lit('{"referrer":"'), ref, pl.lit('",'), pl.col("Payload").str.slice(1)]
            )
        )
        .otherwise(pl.col("Payload"))
        .alias("Payload"),
    )


def _devices(rng: np.random.Generator, n: int, n_devices: int | None) -> tuple[
        int, np.ndarray, np.ndarray, np.ndarray, pl.Series, np.ndarray, np.ndarray]:
    """Devices: Zipf-skewed event counts, bots, market, scope, DeviceId; per event its
    device. Returns (nd, is_bot, dev_market, dev_scope, dev_id, ev_dev, ev_bot)."""
    nd = max(1, n // 20) if n_devices is None else int(n_devices)
    nd = max(1, min(nd, max(n, 1)))
    n_bots = min(nd, max(2, nd // 2000)) if nd >= 10 else 0
    # Zipf share per rank; every device has at least one event.
    counts = np.ones(nd, dtype=np.int64)
    if n > nd:
        # Zipf-Mandelbrot: share of rank k ~ 1 / (k + k0). With k0 = n_devices / 10,000 the
        # head is bot-sized (10 M events: the top device ~20,000 events, the top 229 devices
        # ~18 %) while the median device has a handful of events.
        k0 = max(1.0, nd / 10_000)
        w = 1.0 / (np.arange(1, nd + 1, dtype=np.float64) + k0)
        counts += rng.multinomial(n - nd, w / w.sum())
    elif n < nd:
        counts = np.zeros(nd, dtype=np.int64)
        counts[:n] = 1
    is_bot_rank = np.zeros(nd, dtype=bool)
    is_bot_rank[:n_bots] = True
    # Devices are ranks in a random order so DeviceIds do not reveal their rank.
    dev_perm = rng.permutation(nd)
    counts = counts[dev_perm]
    is_bot = is_bot_rank[dev_perm]
    w = np.array([m.weight for m in _MARKETS])
    dev_market = _draw(rng, np.cumsum(w / w.sum()), nd)
    dev_market[is_bot] = _BOT_MARKET
    dev_scope = _draw(rng, np.array([0.9, 0.95, 1.0]), nd)
    dev_scope[is_bot] = 0
    dev_id = _guids(rng, nd)

    ev_dev = np.repeat(np.arange(nd, dtype=np.int64), counts)
    ev_bot = is_bot[ev_dev]
    return nd, is_bot, dev_market, dev_scope, dev_id, ev_dev, ev_bot


def _visits(rng: np.random.Generator, n: int, days: float, span_ns: int, ev_dev: np.ndarray,
            ev_bot: np.ndarray, dev_market: np.ndarray) -> tuple[Any, ...]:
    """Visits of each device on the diurnal cycle, and the in-visit gaps. Returns
    (new_visit, visit, nv, visit_first, pos, visit_dev, vstart, visit_no, gaps)."""
    dev_start = _segment_starts(ev_dev)
    new_visit = dev_start | ((rng.random(n) < 1 / 6.0) & ~ev_bot)
    visit = np.cumsum(new_visit) - 1
    nv = int(visit[-1]) + 1 if n else 0
    visit_first = np.flatnonzero(new_visit)
    pos = np.arange(n, dtype=np.int64) - visit_first[visit]
    visit_dev = ev_dev[visit_first]
    # Visit start: a day, then a local hour on the diurnal cycle, shifted to UTC.
    day = rng.integers(0, max(1, int(np.ceil(days))), nv)
    hour = _draw(rng, _DIURNAL_CUM, nv)
    tz = np.array([m.tz for m in _MARKETS])[dev_market[visit_dev]]
    vstart = (day * 86400 + (hour - tz) * 3600) * _NS + (rng.random(nv) * 3600 * _NS).astype(
        np.int64
    )
    vstart = np.mod(vstart, span_ns)  # wrap into the window (keeps the local-time shape)
    # Visits of a device happen in time order: sort starts inside each device.
    order = np.lexsort((vstart, visit_dev))
    vstart = vstart[order]
    visit_no = np.arange(nv, dtype=np.int64) - np.flatnonzero(_segment_starts(visit_dev))[
        np.cumsum(_segment_starts(visit_dev)) - 1
    ]

    # In-visit gaps: log-normal around 25 s (seconds to minutes); block events share the
    # page view's time; a few events land within the same millisecond as the previous one.
    gaps = np.exp(rng.normal(np.log(25.0), 1.1, n)) * _NS
    gaps = np.minimum(gaps, 25 * 60 * _NS).astype(np.int64)
    return new_visit, visit, nv, visit_first, pos, visit_dev, vstart, visit_no, gaps


def _navigation(rng: np.random.Generator, n: int, nv: int, ev_bot: np.ndarray, pos: np.ndarray,
                visit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Markov chain per visit (bots crawl independently). Returns (kind, item,
    uri_from, bots): event kind, index in the kind's catalogue block, the row whose page
    the event shows, the bots' rows."""
    kind = np.empty(n, dtype=np.int8)
    item = np.zeros(n, dtype=np.int64)  # index inside the kind's block of the catalogue
    uri_from = np.arange(n, dtype=np.int64)  # row whose page (uri/title) the event shows
    human = np.flatnonzero(~ev_bot)
    hpos = np.minimum(pos[human], 65535).astype(np.uint16)
    by_pos = human[np.argsort(hpos, kind="stable")]
    pos_counts = np.bincount(hpos, minlength=1)
    state = np.zeros(nv, dtype=np.int8)
    cur_cat = rng.integers(0, len(_CATEGORIES), nv)
    cur_prod = np.zeros(nv, dtype=np.int64)
    cur_basket = np.zeros(nv, dtype=np.int64)
    last_page_row = np.zeros(nv, dtype=np.int64)
    cat_cum = np.cumsum(_zipf_p(len(_CATEGORIES), 0.9))
    local_cum = np.cumsum(_zipf_p(_PER_CATEGORY, 1.0))
    prod_cum = np.cumsum(_zipf_p(_N_PRODUCTS, 0.9))
    kw_cum = np.cumsum(_zipf_p(_N_KEYWORDS, 1.0))
    art_cum = np.cumsum(_zipf_p(_N_ARTICLES, 1.0))
    prod_perm = np.random.default_rng(11).permutation(_N_PRODUCTS)  # popularity != order
    lo = 0
    for p, cnt in enumerate(pos_counts):
        if cnt == 0:
            continue
        rows = by_pos[lo : lo + cnt]
        lo += cnt
        v = visit[rows]
        if p == 0:
            k = _draw(rng, _ENTRY_CUM, cnt).astype(np.int8)
        else:
            prev = state[v]
            u = rng.random(cnt)
            k = (u[:, None] > _TRANS_CUM[prev]).sum(axis=1).astype(np.int8)
            k = np.minimum(k, _N_KINDS - 1).astype(np.int8)
        kind[rows] = k
        it = np.zeros(cnt, dtype=np.int64)
        m = k == _CAT
        if m.any():
            c = _draw(rng, cat_cum, int(m.sum()))
            cur_cat[v[m]] = c
            it[m] = c
        m = k == _PROD
        if m.any():
            mm = int(m.sum())
            from_cat = (state[v[m]] == _CAT) if p else np.zeros(mm, dtype=bool)
            local = cur_cat[v[m]] * _PER_CATEGORY + _draw(rng, local_cum, mm)
            glob = prod_perm[_draw(rng, prod_cum, mm)]
            pr = np.where(from_cat, local, glob)
            cur_prod[v[m]] = pr
            it[m] = pr
        m = k == _WISH
        if m.any():
            it[m] = cur_prod[v[m]]
        m = k == _BASKET
        if m.any():
            b = cur_prod[v[m]] * 2 + rng.integers(0, 2, int(m.sum()))
            cur_basket[v[m]] = b
            it[m] = b
        m = (k == _CHECKOUT) | (k == _ORDER)
        if m.any():
            it[m] = cur_basket[v[m]]
        m = k == _SEARCH
        if m.any():
            it[m] = _draw(rng, kw_cum, int(m.sum()))
        m = k == _ARTICLE
        if m.any():
            it[m] = _draw(rng, art_cum, int(m.sum()))
        m = k == _VIDEO
        if m.any():
            it[m] = rng.integers(0, len(_VIDEOS), int(m.sum()))
        m = k == _HERO
        if m.any():
            it[m] = rng.integers(0, len(_HEROES), int(m.sum()))
        item[rows] = it
        block = (k == _VIDEO) | (k == _HERO)
        if p > 0 and block.any():
            uri_from[rows[block]] = last_page_row[v[block]]
        page = ~block
        last_page_row[v[page]] = rows[page]
        state[v] = k
    # Bots crawl: categories, products, articles; independent of each other.
    bots = np.flatnonzero(ev_bot)
    if len(bots):
        bk = _BOT_KINDS[_draw(rng, np.cumsum(_BOT_P), len(bots))]
        kind[bots] = bk
        bit = np.zeros(len(bots), dtype=np.int64)
        bit[bk == _CAT] = rng.integers(0, len(_CATEGORIES), int((bk == _CAT).sum()))
        bit[bk == _PROD] = rng.integers(0, _N_PRODUCTS, int((bk == _PROD).sum()))
        bit[bk == _ARTICLE] = rng.integers(0, _N_ARTICLES, int((bk == _ARTICLE).sum()))
        bit[bk == _SEARCH] = rng.integers(0, _N_KEYWORDS, int((bk == _SEARCH).sum()))
        item[bots] = bit
    return kind, item, uri_from, bots


def _times(rng: np.random.Generator, n: int, span_ns: int, kind: np.ndarray, gaps: np.ndarray,
           new_visit: np.ndarray, vstart: np.ndarray, visit: np.ndarray,
           visit_first: np.ndarray, bots: np.ndarray) -> np.ndarray:
    """EventTime offsets (ns from the start, 100 ns resolution) of every event."""
    # Block events come with their page view: same instant (70%) or within a millisecond.
    is_block = (kind == _VIDEO) | (kind == _HERO)
    r = rng.random(n)
    gaps = np.where(is_block, np.where(r < 0.7, 0, (r * 10_000).astype(np.int64) * _TICK), gaps)
    same_ms = (~is_block) & (r < 0.01)
    gaps = np.where(same_ms, rng.integers(0, 10_000, n) * _TICK, gaps)
    gaps[new_visit] = 0
    csum = np.cumsum(gaps)
    t = vstart[visit] + csum - csum[visit_first][visit]
    # Bots: uniform around the clock over the whole window.
    if len(bots):
        t[bots] = (rng.random(len(bots)) * span_ns).astype(np.int64)
    t = np.mod(t, span_ns)  # a visit running past the end wraps to the start
    t = t - np.mod(t, _TICK)  # 100 ns resolution
    return t


def _burst(rng: np.random.Generator, span_ns: int, nd: int, n: int, ev_dev: np.ndarray,
           t: np.ndarray, kind: np.ndarray, item: np.ndarray, uri_from: np.ndarray,
           visit: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                       np.ndarray, np.ndarray]:
    """Append :data:`BURST_EVENTS` events inside one minute. Returns (n, ev_dev, t, kind,
    item, uri_from, visit) extended."""
    nb = BURST_EVENTS
    minute = (int(rng.integers(span_ns // (60 * _NS) // 3, 2 * span_ns // (60 * _NS) // 3))
              * 60 * _NS)
    b_dev = rng.integers(0, nd, nb)
    b_dev = np.sort(b_dev)
    b_t = minute + rng.integers(0, 6000, nb) * 10_000_000  # 10 ms grid
    b_kind = np.where(rng.random(nb) < 0.8, _PROD, _CAT).astype(np.int8)
    b_item = np.where(b_kind == _PROD, rng.integers(0, 5, nb) * 7,
                      rng.integers(0, 3, nb))
    ev_dev = np.concatenate([ev_dev, b_dev])
    t = np.concatenate([t, b_t])
    kind = np.concatenate([kind, b_kind])
    item = np.concatenate([item, b_item])
    uri_from = np.concatenate([uri_from, np.arange(n, n + nb, dtype=np.int64)])
    visit = np.concatenate([visit, np.full(nb, -1, dtype=np.int64)])
    n += nb
    return n, ev_dev, t, kind, item, uri_from, visit


def _sessions(rng: np.random.Generator, n: int, ev_dev: np.ndarray, t: np.ndarray
              ) -> tuple[np.ndarray, int]:
    """SessionId numbers per event (the renewed 30-minute cookie). Returns (sess, n_sess)."""
    order = np.lexsort((t, ev_dev))
    d_o = ev_dev[order]
    t_o = t[order]
    first = _segment_starts(d_o)
    gap_o = np.empty(n, dtype=np.int64)
    gap_o[0] = 0
    gap_o[1:] = t_o[1:] - t_o[:-1]
    kept_alive = rng.random(n) < 0.08  # an untracked request renewed the cookie
    long_gap = gap_o > 30 * 60 * _NS
    renew = long_gap & ~(kept_alive & (gap_o <= 3 * 3600 * _NS))
    new_sess = first | renew
    sess_o = np.cumsum(new_sess) - 1
    n_sess = int(sess_o[-1]) + 1
    sess = np.empty(n, dtype=np.int64)
    sess[order] = sess_o
    return sess, n_sess


def _people(rng: np.random.Generator, nd: int, is_bot: np.ndarray, visit_dev: np.ndarray,
            visit_no: np.ndarray, visit: np.ndarray, ev_dev: np.ndarray
            ) -> tuple[np.ndarray, int]:
    """Who is logged in on each event (-1: nobody). Returns (ev_user, n_users)."""
    identified = (~is_bot) & (rng.random(nd) < 0.2)
    n_ident = int(identified.sum())
    n_users = max(1, int(n_ident * 0.8))
    dev_user = np.full(nd, -1, dtype=np.int64)
    dev_user[identified] = rng.integers(0, n_users, n_ident)
    # Logged in from some visit on (visit numbers are per device, in time order).
    dev_nvisits = np.bincount(visit_dev, minlength=nd)
    login_from = (rng.random(nd) * np.maximum(dev_nvisits, 1) * 0.6).astype(np.int64)
    shared = identified & (rng.random(nd) < 0.03) & (dev_nvisits >= 2)
    second_user = rng.integers(0, n_users, nd)
    switch_at = login_from + np.maximum(1, (dev_nvisits - login_from) // 2)
    ev_visit_no = np.where(visit >= 0, visit_no[np.maximum(visit, 0)], -1)
    ev_user = np.where(ev_visit_no >= login_from[ev_dev], dev_user[ev_dev], -1)
    sw = shared[ev_dev] & (ev_visit_no >= switch_at[ev_dev]) & (ev_user >= 0)
    ev_user = np.where(sw, second_user[ev_dev], ev_user)
    return ev_user, n_users


def _addresses(rng: np.random.Generator, nd: int, n: int, nv: int, dev_market: np.ndarray,
               is_bot: np.ndarray, visit: np.ndarray, ev_dev: np.ndarray
               ) -> tuple[pl.Series, np.ndarray, pl.Series]:
    """Home and mobile IPs per device, the one each event uses, the device's city.
    Returns (ips, ev_ip, cities)."""
    mobile = rng.random(nd) < 0.45
    v6 = rng.random(nd * 2) < 0.3
    octs = rng.integers(0, 256, size=(nd * 2, 3))
    hextets = rng.integers(0, 65536, size=(nd * 2, 6))
    ip_strings: list[str] = []
    city_idx = rng.random(nd)
    dm = dev_market.tolist()
    bl = is_bot.tolist()
    for i in range(nd * 2):
        d = i >> 1
        mk = _MARKETS[dm[d]]
        if bl[d]:
            first_oct = _BOT_V4[int(octs[i, 0]) % len(_BOT_V4)]
            prefix6 = _BOT_V6
        else:
            first_oct = mk.v4[int(octs[i, 0]) % len(mk.v4)]
            prefix6 = mk.v6
        if v6[i]:
            h = hextets[i]
            ip_strings.append(f"{prefix6}:{h[0]:x}:{h[1]:x}:{h[2]:x}:{h[3]:x}:{h[4]:x}:{h[5]:x}"
                              if prefix6.count(":") == 1 else
                              f"{prefix6}:{h[1]:x}:{h[2]:x}:{h[3]:x}:{h[4]:x}:{h[5]:x}")
        else:
            ip_strings.append(f"{first_oct}.{octs[i, 1]}.{octs[i, 2]}.{1 + (octs[i, 0] % 254)}")
    ips = pl.Series(ip_strings, dtype=pl.String)
    # Per visit: mobile devices alternate between home Wi-Fi and the mobile network.
    use_second = np.zeros(n, dtype=np.int64)
    vis_mob = rng.random(max(nv, 1)) < 0.4
    has_v = visit >= 0
    use_second[has_v] = (mobile[ev_dev[has_v]] & vis_mob[visit[has_v]]).astype(np.int64)
    ev_ip = ev_dev * 2 + use_second

    # Cities: mostly from the market list, some unknown ("").
    city_list: list[str] = []
    for d in range(nd):
        mk = _MARKETS[dm[d]]
        x = float(city_idx[d])
        if bl[d] or x < 0.06:
            city_list.append("")
        else:
            city_list.append(mk.cities[min(int((x - 0.06) / 0.94 * len(mk.cities) ** 1.0
                                               * 0.999), len(mk.cities) - 1)])
    cities = pl.Series(city_list, dtype=pl.String)
    return ips, ev_ip, cities


def _user_names(rng: np.random.Generator, n_users: int) -> tuple[list[str], list[str]]:
    """E-mail and name per user (index ``n_users``: nobody, "")."""
    # Users: names and emails.
    u_first = rng.integers(0, len(_FIRST), n_users)
    u_last = rng.integers(0, len(_LAST), n_users)
    u_dom = rng.integers(0, len(_DOMAINS), n_users)
    u_noname = rng.random(n_users) < 0.2
    emails = ["" for _ in range(n_users + 1)]
    names = ["" for _ in range(n_users + 1)]
    for uix in range(n_users):
        f = _FIRST[u_first[uix]]
        la = _LAST[u_last[uix]]
        emails[uix] = f"{f.lower()}.{la.lower().replace(' ', '')}{uix}@{_DOMAINS[u_dom[uix]]}"
        names[uix] = "" if u_noname[uix] else f"{f} {la}"
    return emails, names


def _frame(rng: np.random.Generator, *, cat: _Catalog, start_ns: int, t: np.ndarray,
           ev_dev: np.ndarray, entry: np.ndarray, uri_src: np.ndarray, sess: np.ndarray,
           n_sess: int, ev_user: np.ndarray, n_users: int, ev_ip: np.ndarray,
           dev_id: pl.Series, dev_scope: np.ndarray, dev_market: np.ndarray, ips: pl.Series,
           cities: pl.Series, emails: list[str], names: list[str]) -> pl.DataFrame:
    """The canonical frame from per-event indexes (in final order) into the tables.
    Draws the TrackIds, then the SessionIds (in that order)."""
    n = len(t)
    c_etype = pl.Series(cat.etype, dtype=pl.String)
    c_value = pl.Series(cat.value, dtype=pl.String)
    c_uri = pl.Series(cat.uri, dtype=pl.String)
    c_title = pl.Series(cat.title, dtype=pl.String)
    c_payload = pl.Series(cat.payload, dtype=pl.String)
    scopes = pl.Series(["default", "b2b", "outlet"], dtype=pl.String)
    countries = pl.Series([m.country for m in _MARKETS], dtype=pl.String)
    e_idx = pl.Series(entry)
    u_idx = pl.Series(np.where(ev_user >= 0, ev_user, n_users))
    frame = pl.DataFrame(
        {
            "TrackId": _guids(rng, n),
            "DeviceId": dev_id.gather(pl.Series(ev_dev)),
            "EventType": c_etype.gather(e_idx),
            "Value": c_value.gather(e_idx),
            "Scope": scopes.gather(pl.Series(dev_scope[ev_dev])),
            "PageUri": c_uri.gather(pl.Series(uri_src)),
            "PageTitle": c_title.gather(pl.Series(uri_src)),
            "RemoteAddress": ips.gather(pl.Series(ev_ip)),
            "CountryCode": countries.gather(pl.Series(dev_market[ev_dev])),
            "City": cities.gather(pl.Series(ev_dev)),
            "SessionId": _guids(rng, n_sess).gather(pl.Series(sess)),
            "EventTime": pl.Series(t + start_ns).cast(pl.Datetime("ns")).dt.replace_time_zone(
                "UTC"
            ),
            "User": pl.DataFrame(
                {
                    "Email": pl.Series(emails, dtype=pl.String).gather(u_idx),
                    "Name": pl.Series(names, dtype=pl.String).gather(u_idx),
                    "Info": pl.Series("Info", [None] * n, pl.String),
                }
            ).to_struct("User"),
            "Payload": c_payload.gather(e_idx),
            "Headers": pl.Series("Headers", [None] * n, pl.String),
            "Extras": pl.Series("Extras", [None] * n, pl.String),
        }
    )
    return frame


def _orders(frame: pl.DataFrame, *, cat: _Catalog, seed: int, kind: np.ndarray,
            item: np.ndarray, market: np.ndarray) -> pl.DataFrame:
    """Orders: unique order id, total and lines from the basket being checked out
    (``market``: each event's market index)."""
    is_order = kind == _ORDER
    if is_order.any():
        o_rows = np.flatnonzero(is_order)
        o_market = market[o_rows]
        o_basket = item[o_rows]
        total = cat.basket_total[o_market, o_basket]
        lines = [cat.basket_lines[mk_][b] for mk_, b in zip(o_market.tolist(), o_basket.tolist(), strict=True)]
        cur = [_MARKETS[mk_].currency for mk_ in o_market.tolist()]
        oid = [f"PO{seed % 1000:03d}-{i + 1:07d}" for i in range(len(o_rows))]
        tot_txt = [_json(_num(x)) for x in total.tolist()]
        o_payload = [
            f'{{"orderId":"{o}","total":{tt},"currency":"{c}","lines":{ln}}}'
            for o, tt, c, ln in zip(oid, tot_txt, cur, lines, strict=True)
        ]
        o_value = [f"Placed order {o}" for o in oid]
        pay = frame.get_column("Payload").scatter(o_rows, pl.Series(o_payload, dtype=pl.String))
        val = frame.get_column("Value").scatter(o_rows, pl.Series(o_value, dtype=pl.String))
        frame = frame.with_columns(pay.alias("Payload"), val.alias("Value"))
    return frame


def generate(
    n_events: int,
    *,
    n_devices: int | None = None,
    days: float = 14,
    start: datetime | None = None,
    seed: int = 0,
    burst: bool = False,
    campaigns: int = 0,
) -> pl.DataFrame:
    """Generate ``n_events`` realistic track events as a canonical events frame.

    Args:
        n_events: number of events (``burst=True`` adds :data:`BURST_EVENTS` more).
        n_devices: number of distinct devices; default ``max(1, n_events // 20)``
            (10 M events -> 500,000 devices). Capped at ``n_events``.
        days: length of the time window in days; events fall in ``[start, start + days)``.
        start: first instant (timezone-aware or naive UTC); default :data:`DEFAULT_START`.
        seed: random seed; the same arguments always give the same frame.
        burst: add :data:`BURST_EVENTS` events inside one minute (a flash-sale / bot
            flood on a 10 ms grid, so many timestamps are exactly equal).
        campaigns: number of e-mail mailings to add (:func:`campaign_events`: sends,
            opens and clicks, recipient e-mail as DeviceId), drawn from their own
            generator: every other event is the same as with ``campaigns=0``.

    Returns:
        A frame with :data:`psanalytics.schema.EVENTS_SCHEMA`, sorted by ``EventTime``
        (ties keep generation order), with unique ``TrackId`` GUIDs.
    """
    if n_events < 0:
        raise ArgumentError(f"n_events must be >= 0, got {n_events}")
    if days <= 0:
        raise ArgumentError(f"days must be > 0, got {days}")
    if n_events == 0:
        return schema.empty_frame()
    if start is None:
        start = DEFAULT_START
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start_ns = int(start.timestamp()) * _NS + start.microsecond * 1000
    span_ns = int(days * 86400 * _NS)
    rng = np.random.default_rng(seed)
    cat = _catalog()

    # Long because: the draws come from one generator in a fixed order (the committed sample
    # is reproduced byte for byte from it), so the phases below run in exactly this order;
    # each phase is its own function, this one only threads the arrays between them.
    n = n_events
    nd, is_bot, dev_market, dev_scope, dev_id, ev_dev, ev_bot = _devices(rng, n, n_devices)
    new_visit, visit, nv, visit_first, pos, visit_dev, vstart, visit_no, gaps = _visits(
        rng, n, days, span_ns, ev_dev, ev_bot, dev_market)
    kind, item, uri_from, bots = _navigation(rng, n, nv, ev_bot, pos, visit)
    t = _times(rng, n, span_ns, kind, gaps, new_visit, vstart, visit, visit_first, bots)
    del gaps, pos, new_visit, vstart, bots
    if burst:
        n, ev_dev, t, kind, item, uri_from, visit = _burst(rng, span_ns, nd, n, ev_dev, t, kind,
                                                           item, uri_from, visit)
    sess, n_sess = _sessions(rng, n, ev_dev, t)
    ev_user, n_users = _people(rng, nd, is_bot, visit_dev, visit_no, visit, ev_dev)
    ips, ev_ip, cities = _addresses(rng, nd, n, nv, dev_market, is_bot, visit, ev_dev)
    emails, names = _user_names(rng, n_users)

    # ---------------------------------------------------------------- final order
    # Catalogue entry per event (generation order); block events show their page's URI.
    kind_off = np.array([cat.off[k] for k in range(_N_KINDS)], dtype=np.int64)
    gen_entry = dev_market[ev_dev] * cat.per_market + kind_off[kind] + np.where(
        kind == _ORDER, 0, item
    )
    uri_gen = gen_entry[uri_from]
    # Traffic source per visit: the entry event carries the query string and the referrer;
    # block events on the entry page show its URI, query string included.
    v_src, v_query, v_ref = _visit_sources(seed, visit_no, is_bot[visit_dev],
                                           dev_market[visit_dev])
    row_src = np.full(n, -1, dtype=np.int64)
    row_src[visit_first] = np.arange(nv, dtype=np.int64)
    page_visit = row_src[uri_from]  # visit whose entry page this event shows, or -1
    entry_visit = row_src
    del uri_from, visit, row_src
    final = np.argsort(t, kind="stable")
    page_visit = page_visit[final]
    entry_visit = entry_visit[final]
    ev_dev = ev_dev[final]
    t = t[final]
    kind = kind[final]
    item = item[final]
    entry = gen_entry[final]
    uri_src = uri_gen[final]
    del gen_entry, uri_gen
    sess = sess[final]
    ev_user = ev_user[final]
    ev_ip = ev_ip[final]
    del final

    frame = _frame(rng, cat=cat, start_ns=start_ns, t=t, ev_dev=ev_dev, entry=entry,
                   uri_src=uri_src, sess=sess, n_sess=n_sess, ev_user=ev_user, n_users=n_users,
                   ev_ip=ev_ip, dev_id=dev_id, dev_scope=dev_scope, dev_market=dev_market,
                   ips=ips, cities=cities, emails=emails, names=names)
    frame = _orders(frame, cat=cat, seed=seed, kind=kind, item=item, market=dev_market[ev_dev])
    frame = _add_sources(frame, page_visit, entry_visit, v_query, v_ref)
    del v_src
    if campaigns:
        frame = _with_campaigns(frame, seed, campaigns)
    return frame


# --------------------------------------------------------------------------- campaigns

_MAILINGS = ("Spring sale", "New arrivals", "Member days", "Summer trails", "Ski season",
             "Gift guide", "Autumn layers", "Outlet week")
_SEND_GAP_NS = 20_000_000  # a mail server's sequential dispatch: one recipient per 20 ms


def campaign_events(frame: pl.DataFrame, *, seed: int = 0, mailings: int = 3,
                    reach: float = 0.8, open_rate: float = 0.4,
                    click_rate: float = 0.3) -> pl.DataFrame:
    """E-mail campaign events for the known users of ``frame``, as the vendor's Campaign
    integration tracks them (``shared/spec/apis.md`` section 5).

    ``mailings`` mailings are sent at evenly spaced instants inside ``frame``'s time
    range, each to a share ``reach`` of the users with an e-mail (one every 20 ms):
    ``epiCampaignMailingtouser`` per recipient, ``epiCampaignOpen`` for a share
    ``open_rate`` of them (minutes to hours later, from the recipient's last address),
    ``epiCampaignClick`` for a share ``click_rate`` of the openers (seconds later, on the
    mailing's landing page with ``utm_medium=email``). Every one has the recipient's
    e-mail as ``DeviceId`` and ``User.Email``, and ``Payload`` ``{"epi": {"campaign":
    {"mailingId": <id>}}}`` (a 12-digit number). Opens and clicks that would fall after
    ``frame``'s last event are left out (not yet happened). Drawn from their own generator
    (``seed``); sorted by ``EventTime``; TrackIds are GUIDs.

    >>> ev = campaign_events(generate(2_000, seed=3), seed=3)
    >>> sorted(ev["EventType"].unique())
    ['epiCampaignClick', 'epiCampaignMailingtouser', 'epiCampaignOpen']
    >>> bool((ev["DeviceId"] == ev["User"].struct.field("Email")).all())
    True
    """
    if mailings < 0:
        raise ArgumentError(f"mailings must be >= 0, got {mailings}")
    for name, share in (("reach", reach), ("open_rate", open_rate), ("click_rate", click_rate)):
        if not 0.0 <= share <= 1.0:
            raise ArgumentError(f"{name} must be between 0 and 1, got {share}")
    if frame.height == 0 or mailings == 0:
        return schema.empty_frame()
    rng = np.random.default_rng([seed, 0xCA3])  # its own stream: other events unchanged
    email = pl.col("User").struct.field("Email")
    users = (
        frame.filter(email != "").sort("EventTime", maintain_order=True)
        .group_by(email.alias("Email"))
        .agg(pl.col("User").struct.field("Name").last().alias("Name"),
             pl.col("RemoteAddress").last(), pl.col("CountryCode").last(), pl.col("City").last())
        .sort("Email")
    )
    if users.height == 0:
        return schema.empty_frame()
    times = frame.get_column("EventTime").dt.epoch("ns")
    t0, t1 = int(times.min()), int(times.max())  # type: ignore[arg-type]
    user_ix: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    mail_ix: list[np.ndarray] = []
    ids = rng.integers(100_000_000_000, 1_000_000_000_000, mailings)
    for m in range(mailings):
        send = t0 + (t1 - t0) * (m + 1) // (mailings + 1)
        to = np.flatnonzero(rng.random(users.height) < reach)
        sent = send + np.arange(len(to), dtype=np.int64) * _SEND_GAP_NS
        opened = rng.random(len(to)) < open_rate
        open_t = sent + (np.exp(rng.normal(np.log(7_200.0), 1.2, len(to))) * _NS).astype(np.int64)
        clicked = opened & (rng.random(len(to)) < click_rate)
        click_t = open_t + (np.exp(rng.normal(np.log(40.0), 0.8, len(to))) * _NS).astype(np.int64)
        for kind, mask, t in ((0, np.ones(len(to), dtype=bool), sent), (1, opened, open_t),
                              (2, clicked, click_t)):
            user_ix.append(to[mask])
            kinds.append(np.full(int(mask.sum()), kind, dtype=np.int64))
            stamps.append(t[mask])
            mail_ix.append(np.full(int(mask.sum()), m, dtype=np.int64))
    u = np.concatenate(user_ix)
    k = np.concatenate(kinds)
    t = np.concatenate(stamps)
    mi = np.concatenate(mail_ix)
    keep = t <= t1
    u, k, t, mi = u[keep], k[keep], t[keep], mi[keep]
    t = t - np.mod(t, _TICK)
    n = len(u)
    names = [_MAILINGS[i % len(_MAILINGS)] for i in range(mailings)]
    slugs = [x.lower().replace(" ", "-") for x in names]
    kind_types = pl.Series(["epiCampaignMailingtouser", "epiCampaignOpen", "epiCampaignClick"])
    verbs = ("Received mailing", "Opened mailing", "Clicked a link in mailing")
    value = pl.Series([f"{verbs[a]} {names[b]}" for a, b in zip(k.tolist(), mi.tolist(), strict=True)],
                      dtype=pl.String)
    landing = pl.Series(
        [f"{_HOST}/campaign/{sl}/?utm_source=newsletter&utm_medium=email&utm_campaign={sl}"
         for sl in slugs] + [""], dtype=pl.String)
    payload = pl.Series([f'{{"epi":{{"campaign":{{"mailingId":{int(i)}}}}}}}' for i in ids],
                        dtype=pl.String)
    uix = pl.Series(u)
    from_user = pl.Series(k > 0)  # opens and clicks come from the recipient's device

    def at_user(col: str) -> pl.Series:
        return pl.select(pl.when(pl.lit(from_user)).then(pl.lit(users.get_column(col).gather(uix)))
                         .otherwise(pl.lit(""))).to_series().alias(col)

    emails = users.get_column("Email").gather(uix)
    out = pl.DataFrame({
        "TrackId": _guids(rng, n),
        "DeviceId": emails,
        "EventType": kind_types.gather(pl.Series(k)),
        "Value": value,
        "Scope": pl.Series(["default"] * n, dtype=pl.String),
        "PageUri": landing.gather(pl.Series(np.where(k == 2, mi, mailings))),
        "PageTitle": pl.Series([""] * n, dtype=pl.String),
        "RemoteAddress": at_user("RemoteAddress"),
        "CountryCode": at_user("CountryCode"),
        "City": at_user("City"),
        "SessionId": pl.Series([""] * n, dtype=pl.String),
        "EventTime": pl.Series(t).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
        "User": pl.DataFrame({"Email": emails, "Name": users.get_column("Name").gather(uix),
                              "Info": pl.Series([None] * n, dtype=pl.String)}).to_struct("User"),
        "Payload": payload.gather(pl.Series(mi)),
        "Headers": pl.Series([None] * n, dtype=pl.String),
        "Extras": pl.Series([None] * n, dtype=pl.String),
    })
    return out.sort("EventTime", maintain_order=True)


def _with_campaigns(frame: pl.DataFrame, seed: int, mailings: int) -> pl.DataFrame:
    """``frame`` and its campaign events, sorted by ``EventTime`` (ties: ``frame`` first)."""
    extra = campaign_events(frame, seed=seed, mailings=mailings)
    return pl.concat([frame, extra]).sort("EventTime", maintain_order=True)


def real_shaped(frame: pl.DataFrame, *, seed: int = 0, empty_track_ids: float = 0.3,
                identical_pairs: int = 20, extra_share: float = 0.1,
                campaigns: int = 3) -> pl.DataFrame:
    """``frame`` as the real service holds such events (``shared/spec/apis.md`` section 5).

    ``campaigns`` e-mail mailings are added first (:func:`campaign_events`: the
    recipient's e-mail as DeviceId, ``Payload.epi.campaign.mailingId``). Then a share ``empty_track_ids`` of the events were tracked without a TrackId (``""``);
    ``identical_pairs`` events were tracked twice, identically (so they have no TrackId
    either: the service skips a repeated one); known users carry ``User.Info``
    (``{"Market": <country>}``); every event has ``Headers: {}``; a share ``extra_share``
    has a top-level field outside the documented ones (``"Channel": "web"``). Sorted by
    ``EventTime``; the same arguments give the same frame.

    >>> shaped = real_shaped(generate(1_000, seed=1), seed=1)
    >>> int((shaped["TrackId"] == "").sum()) >= 300
    True
    """
    if frame.height and campaigns:
        frame = _with_campaigns(frame, seed, campaigns)
    rng = np.random.default_rng(seed)
    n = frame.height
    if n == 0:
        return frame
    empty = pl.Series(rng.random(n) < empty_track_ids)
    extra = pl.Series(rng.random(n) < extra_share)
    out = frame.with_columns(
        pl.when(empty).then(pl.lit("")).otherwise(pl.col("TrackId")).alias("TrackId"),
        pl.struct(
            pl.col("User").struct.field("Email"), pl.col("User").struct.field("Name"),
            pl.when(pl.col("User").struct.field("Email") != "")
            .then('{"Market":"' + pl.col("CountryCode") + '"}').alias("Info"),
        ).alias("User"),
        pl.lit("{}").alias("Headers"),
        pl.when(extra).then(pl.lit('{"Channel":"web"}')).alias("Extras"),
    )
    if identical_pairs:
        rows = pl.Series(rng.choice(n, size=min(identical_pairs, n), replace=False))
        twins = out[rows].with_columns(pl.lit("").alias("TrackId"))
        out = pl.concat([_with_rows(out, rows, twins), twins])
    return out.sort("EventTime", maintain_order=True)


def _with_rows(frame: pl.DataFrame, rows: pl.Series, new: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the rows at ``rows`` replaced by ``new`` (in that order)."""
    drop = np.zeros(frame.height, dtype=bool)
    drop[rows.to_numpy()] = True
    return pl.concat([frame.filter(pl.Series(~drop)), new])


# --------------------------------------------------------------------------- default sample


def default_sample_path() -> Path:
    """Where the committed sample lives (``<repo>/data/samples/track-events.ndjson.gz``)."""
    return Path(__file__).resolve().parent.parent / "data" / "samples" / "track-events.ndjson.gz"


def _default_generate() -> pl.DataFrame:
    return generate(DEFAULT_N_EVENTS, days=DEFAULT_DAYS, seed=DEFAULT_SEED)


def default_events() -> pl.DataFrame:
    """The ~50,000-event committed sample, read back as a canonical events frame.

    Reads ``data/samples/track-events.ndjson.gz`` when it is there (a source checkout);
    otherwise (an installed package) regenerates it with the same arguments, which gives
    the identical frame.
    """
    return _default_cached().clone()


@lru_cache(maxsize=1)
def _default_cached() -> pl.DataFrame:
    path = default_sample_path()
    if path.is_file():
        return schema.ndjson_to_frame(read_bytes(path))
    return _default_generate()
