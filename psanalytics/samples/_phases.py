"""The generator's phases, in the order :func:`psanalytics.samples.generate` draws them
from its one ``numpy`` generator: devices, visits and their traffic sources, navigation,
times, the burst, sessions, people, addresses, the frame and its orders. Each phase takes
the generator and the arrays of the phases before it; reordering draws changes every
sample, so new draws go last (or into their own generator, as sources and campaigns do)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from psanalytics.samples._world import (
    _ARTICLE,
    _BASKET,
    _BOT_KINDS,
    _BOT_MARKET,
    _BOT_P,
    _BOT_V4,
    _BOT_V6,
    _CAT,
    _CATEGORIES,
    _CHECKOUT,
    _DIURNAL_CUM,
    _DOMAINS,
    _ENTRY_CUM,
    _FIRST,
    _HERO,
    _HEROES,
    _LAST,
    _MARKETS,
    _N_ARTICLES,
    _N_KEYWORDS,
    _N_KINDS,
    _N_PRODUCTS,
    _NS,
    _ORDER,
    _PER_CATEGORY,
    _PROD,
    _SEARCH,
    _SOURCES,
    _TICK,
    _TRANS_CUM,
    _VIDEO,
    _VIDEOS,
    _WISH,
    BURST_EVENTS,
    _Catalog,
    _draw,
    _guids,
    _json,
    _num,
    _zipf_p,
)


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
    # Long because: the chain's draws for every position happen in one fixed order that
    # the committed sample depends on; split, that order would be spread over functions.
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


