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
* **Traffic sources**: every human visit has one (``_world._SOURCES``), drawn from a separate
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

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from psanalytics import schema
from psanalytics._files import read_bytes
from psanalytics.errors import ArgumentError
from psanalytics.samples._campaigns import _with_campaigns, campaign_events, real_shaped
from psanalytics.samples._phases import (
    _add_sources,
    _addresses,
    _burst,
    _devices,
    _frame,
    _navigation,
    _orders,
    _people,
    _sessions,
    _times,
    _user_names,
    _visit_sources,
    _visits,
)
from psanalytics.samples._world import (
    _N_KINDS,
    _NS,
    _ORDER,
    BURST_EVENTS,
    _catalog,
)

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



# --------------------------------------------------------------------------- default sample


def default_sample_path() -> Path:
    """Where the committed sample lives (``<repo>/data/samples/track-events.ndjson.gz``)."""
    return Path(__file__).resolve().parents[2] / "data" / "samples" / "track-events.ndjson.gz"


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
