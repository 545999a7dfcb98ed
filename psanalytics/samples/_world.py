"""The sample generator's world: markets (language, currency, URL prefix, address
blocks), the shop's catalogue, the page-kind Markov chain and diurnal cycle, and the small
drawing helpers. Tables only: the order of random draws lives in :mod:`psanalytics.samples`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

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
    # Long because: the catalogue is drawn in one fixed order from its own generator
    # (every GUID, price and basket line of the committed sample depends on that order).
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

