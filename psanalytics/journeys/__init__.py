"""Journeys: funnels, retention, paths, transitions, channels and attribution.

Every function takes canonical events (DataFrame or LazyFrame) or the ``.events`` of a
:func:`psanalytics.sessionize` result. The shared vocabulary:

* ``within=``: what one journey is: ``"session"`` (uses ``session_key`` when the frame has
  it, otherwise the events are sessionized with the default rules first), ``"device"`` (all
  events of one ``DeviceId``) or ``"user"`` (all events of the devices stitched to one
  e-mail; devices with no e-mail stay on their own). (``path=`` is the deprecated spelling.)
* ``level=``: what a step is: ``"event_type"`` (the default everywhere), ``"page"``,
  ``"page_path"`` (:func:`clean_url`), ``"page_type"`` (:func:`page_type`), ``"title"``, or
  any column.
* ``top=``: how many rows to keep (``n=`` is the deprecated spelling).

Inside a journey, events are ordered by (``EventTime``, input order), so ties in time are
decided by the input order, as in :func:`psanalytics.sessionize`.
"""

from __future__ import annotations

from psanalytics.journeys._attribution import MODELS, attribute, orders
from psanalytics.journeys._channels import (
    AD_NETWORK_RULES,
    CHANNEL_RULES,
    GOOGLE_ADS_NETWORK_NAMES,
    channel,
    source_medium,
)
from psanalytics.journeys._common import (
    DEFAULT_LEVEL,
    LEVELS,
    DeprecatedArgumentWarning,
    JourneyError,
)
from psanalytics.journeys._funnel import (
    QUANTILES,
    TIME_BINS,
    Exclusion,
    Step,
    exclude,
    funnel,
    funnel_times,
    step,
    time_histogram,
)
from psanalytics.journeys._paths import ENTRY, EXIT, OTHER, paths, top_paths, transitions
from psanalytics.journeys._retention import retention, retention_matrix
from psanalytics.journeys._urls import PAGE_TYPES, clean_url, page_type

__all__ = [
    "AD_NETWORK_RULES",
    "CHANNEL_RULES",
    "DEFAULT_LEVEL",
    "ENTRY",
    "EXIT",
    "GOOGLE_ADS_NETWORK_NAMES",
    "LEVELS",
    "MODELS",
    "OTHER",
    "PAGE_TYPES",
    "QUANTILES",
    "TIME_BINS",
    "DeprecatedArgumentWarning",
    "Exclusion",
    "JourneyError",
    "Step",
    "attribute",
    "channel",
    "clean_url",
    "exclude",
    "funnel",
    "funnel_times",
    "orders",
    "page_type",
    "paths",
    "retention",
    "retention_matrix",
    "source_medium",
    "step",
    "time_histogram",
    "top_paths",
    "transitions",
]
