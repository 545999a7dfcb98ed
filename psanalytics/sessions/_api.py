"""``sessionize()``: parse the options into :class:`Rules` once, then run the in-memory
kernel (a frame) or the bounded-memory bucketed path (``out=``/``events_out=``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from psanalytics.sessions._buckets import sessionize_to_files
from psanalytics.sessions._rules import Rules, _collect
from psanalytics.sessions._table import (
    Sessionized,
    SessionizedFiles,
    _is_source,
    sessionize_rules,
)


def sessionize(
    events: pl.DataFrame | pl.LazyFrame | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timeout: str | timedelta | float = "30m",
    max_duration: str | timedelta | float | None = "24h",
    split_at_midnight: str | None = None,
    split_on_campaign: bool = False,
    split_on_identity_change: bool = False,
    key: str | Sequence[str] = "DeviceId",
    columns: str | Sequence[str] = "all",
    minimal: bool = False,
    window: tuple[datetime | None, datetime | None] | None = None,
    pageview_types: Sequence[str] = ("epiPageView",),
    conversion_types: Sequence[str] = ("order",),
    engaged_after: str | timedelta | float = "10s",
    time_col: str = "EventTime",
    out: str | os.PathLike[str] | None = None,
    events_out: str | os.PathLike[str] | None = None,
    memory: str | int | None = None,
    progress: bool | None = None,
) -> Sessionized | SessionizedFiles:
    """Cut events into sessions per device and describe each session.

    Args:
        events: canonical events (DataFrame or LazyFrame), or export files (a path, folder,
            glob or list of them). Needs the ``key`` column(s), ``EventTime`` and
            ``PageUri``; the full table also reads ``PageTitle``, ``EventType``, ``User``,
            ``SessionId``, ``CountryCode``, ``City``, ``Scope`` and ``Payload`` when present.
        timeout: inactivity that ends a session (strictly more than this): ``"30m"``,
            ``"15m"``, a ``timedelta``, seconds, or ``"profile_store_visits"`` (15 min).
        max_duration: cap on a session's length (``None`` for no cap). The first event after
            ``start + max_duration`` starts a new session.
        split_at_midnight: an IANA time zone name; a new session when the local date changes.
        split_on_campaign: a new session when the ``utm_*``/``gclid`` campaign of ``PageUri``
            changes to a new non-empty value.
        split_on_identity_change: a new session when a different non-empty ``User.Email``
            appears on the device within a session.
        key: the column (or columns, e.g. ``["DeviceId", "Scope"]``) sessions are cut by.
        columns: which sessions-table columns to compute: ``"all"`` (the whole table, and
            four per-event columns), ``"minimal"`` (``session_key``, ``device_id``,
            ``session_index``, ``start_time``, ``end_time``, ``duration_s``, ``n_events``,
            ``entry_page``, ``exit_page``; the events get ``session_index`` only; about 5x
            faster), or a list of column names (computed with the cheapest set that has
            them).
        minimal: the older spelling of ``columns="minimal"``.
        window: ``(start, end)`` of the data window for ``truncated_start``/``truncated_end``
            (default: the first and last ``EventTime`` in the data; either may be None).
        pageview_types: ``EventType`` values that count as page views.
        conversion_types: ``EventType`` values that make a session engaged.
        engaged_after: a session this long (or longer) is engaged (GA4: 10 s).
        time_col: the event time column.
        out, events_out: write the sessions table (and the events with their session
            columns) to these Parquet (or CSV) files with bounded memory: devices are
            processed in hash buckets sized from the input and ``memory``, and the results
            are streamed to the files; they are exactly the in-memory result. Returns a
            :class:`SessionizedFiles`.
        memory: the memory budget of the bucketed path (``"4GB"``, ``"800MB"``, bytes);
            default 2 GB. Giving it (or a LazyFrame with ``out=``) selects the bucketed path.
        progress: a progress bar per bucket (default: when there is more than one bucket).

    Returns:
        :class:`Sessionized` with ``.events`` (input order) and ``.sessions`` (by start); with
        ``out=``/``events_out=``, a :class:`SessionizedFiles`.

    Raises:
        SessionizeError: a missing column, a null time, a bad duration or time zone.

    Example (d1's two events are 5 minutes apart: one session; d2 has its own):

    >>> from psanalytics import normalize, sessionize
    >>> ev = normalize([
    ...     {"TrackId": "a", "DeviceId": "d1", "EventType": "home",
    ...      "EventTime": "2024-03-04T10:00:00.1234567Z"},
    ...     {"TrackId": "b", "DeviceId": "d1", "EventType": "order",
    ...      "EventTime": "2024-03-04T10:05:00Z"},
    ...     {"TrackId": "c", "DeviceId": "d2", "EventType": "home",
    ...      "EventTime": "2024-03-04T11:00:00Z"},
    ... ])
    >>> s = sessionize(ev, timeout="30m")
    >>> s.sessions.select("session_id", "n_events", "duration_s").rows()
    [('d1:1', 2, 299.8765433), ('d2:1', 1, 0.0)]
    """
    # Long because: the docstring documents every option; the body is a dozen lines.
    rules = Rules.of(
        timeout=timeout,
        max_duration=max_duration,
        split_at_midnight=split_at_midnight,
        split_on_campaign=split_on_campaign,
        split_on_identity_change=split_on_identity_change,
        key=key,
        columns=columns,
        minimal=minimal,
        window=window,
        pageview_types=pageview_types,
        conversion_types=conversion_types,
        engaged_after=engaged_after,
        time_col=time_col,
    )
    if out is not None or events_out is not None:
        return sessionize_to_files(
            events, rules, out=out, events_out=events_out, memory=memory, progress=progress
        )
    if _is_source(events):
        from psanalytics.exports import read_events

        events = read_events(events)  # type: ignore[arg-type]
    return sessionize_rules(_collect(events), rules)
