"""Sessionize track events and stitch devices to users.

``sessionize(events)`` cuts each device's events into sessions with the rules of
``spec/sessions.md`` §5.1 and returns a :class:`Sessionized` with

* ``.events``: the input rows, in the input's order, plus ``session_key`` (dense global
  integer), ``session_id`` (``"{DeviceId}:{session_index}"``), ``session_index`` (1-based per
  device) and ``event_index_in_session`` (1-based);
* ``.sessions``: one row per session (the §5.2 schema), ordered by start (ties by the
  input order of the first event), so ``session_key`` equals the row number.

Rules (defaults first):

* per ``DeviceId`` (``key=``); events ordered by (``EventTime``, input order), stable;
* a new session when the gap to the device's previous event is **more than** ``timeout``
  (30 min; exactly 30 min stays in the session); ``timeout="profile_store_visits"`` is the
  15-minute rule of Profile Store's ``Visits``;
* ``max_duration`` (24 h): the first event **after** ``session start + 24 h`` opens a new
  session, which is re-anchored at that event (PostHog semantics), applied exactly;
* ``split_at_midnight="Europe/Stockholm"``: a new session when the local date changes;
* ``split_on_campaign=True``: a new session when the campaign parsed from ``PageUri``
  (``utm_source``, ``utm_medium``, ``utm_campaign``, ``utm_term``, ``utm_content``,
  ``gclid``) is non-empty and differs from the last non-empty campaign seen earlier in the
  session (including: the session had none so far);
* ``split_on_identity_change=True``: a new session when a non-empty ``User.Email``
  (trimmed, lower-cased) differs from the last non-empty e-mail seen earlier in the
  session (logging in on an anonymous session is not a change).

The splits are evaluated in the order inactivity, midnight, campaign, identity,
max_duration; ``split_reason`` names the first rule that fired.

How it is fast (spec §5.3): device keys are hashed to integers, only one packed ``uint64``
key (device hash, time-ordered row) is sorted, boundaries are found with shifted compares
on the whole sorted array (never ``over()``), per-session values are read by position at
the session starts and ends, and the string columns are never reordered: only the few
values at session boundaries are gathered.
"""

from psanalytics.sessions._api import sessionize
from psanalytics.sessions._buckets import device_buckets, parse_memory
from psanalytics.sessions._rules import (
    PROFILE_STORE_VISITS,
    SPLIT_REASON_DTYPE,
    SPLIT_REASONS,
    Rules,
    SessionizeError,
    parse_duration,
)
from psanalytics.sessions._stitch import stitch
from psanalytics.sessions._table import Sessionized, SessionizedFiles, sessionize_rules

__all__ = [
    "PROFILE_STORE_VISITS",
    "SPLIT_REASONS",
    "SPLIT_REASON_DTYPE",
    "SessionizeError",
    "Sessionized",
    "SessionizedFiles",
    "device_buckets",
    "parse_memory",
    "Rules",
    "parse_duration",
    "sessionize",
    "sessionize_rules",
    "stitch",
]
