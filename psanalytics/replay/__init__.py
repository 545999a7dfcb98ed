"""Replay Profile Store track events into the Optimizely Event API, a Tracking API, or
Optimizely Data Platform (ODP).

- :func:`to_visitors` / :func:`from_visitor_log`: track events <-> Event API visitors;
- :class:`Replayer` and :func:`replay`: batching by visitors and encoded size, pacing,
  bounded workers, retries, checkpoint/resume, dry run, report;
- :func:`encode_odp_events` / :class:`OdpMap`: track events -> ODP events (and customers);
  ``report.reconcile()`` compares source and destination per day x event type;
- sinks: :class:`EventApiSink` (``POST /v1/events``), :class:`TrackingSink` (TrackBulk),
  :class:`OdpSink` (``POST /v3/events``, ``/v3/profiles``).
"""

from __future__ import annotations

from psanalytics.replay.batching import (
    MAX_BYTES,
    TRACK_BULK_MAX_BYTES,
    TRACK_BULK_MAX_EVENTS,
    Batch,
    BatchingError,
    Quarantined,
    event_api_batches,
    tracking_batches,
    tracking_records,
)
from psanalytics.replay.mapping import (
    ACTIVATE_EVENT_KEY,
    DecisionSpec,
    EventMap,
    EventSpec,
    MappingError,
    body_prefix,
    encode_visitors,
    event_uuid,
    from_visitor_log,
    to_visitors,
    truncate_ip,
)
from psanalytics.replay.odp import (
    MAX_ODP_OBJECTS,
    STANDARD_EVENTS,
    OdpEventSpec,
    OdpMap,
    encode_odp_customers,
    encode_odp_events,
    encode_odp_profiles,
    mapping_table,
    odp_batches,
    to_odp_events,
)
from psanalytics.replay.options import Files, Limits, MappingOptions, Pacing
from psanalytics.replay.pacing import Pacer, PacingError
from psanalytics.replay.reconcile import differences
from psanalytics.replay.replayer import (
    Checkpoint,
    EventApiSink,
    OdpSink,
    Rejection,
    Replayer,
    ReplayError,
    ReplayReport,
    Sink,
    TrackingSink,
    replay,
    resend,
)

__all__ = [
    "ACTIVATE_EVENT_KEY",
    "Files",
    "Limits",
    "MappingOptions",
    "Pacing",
    "MAX_ODP_OBJECTS",
    "STANDARD_EVENTS",
    "OdpEventSpec",
    "OdpMap",
    "OdpSink",
    "differences",
    "encode_odp_events",
    "encode_odp_customers",
    "encode_odp_profiles",
    "mapping_table",
    "odp_batches",
    "to_odp_events",
    "MAX_BYTES",
    "TRACK_BULK_MAX_BYTES",
    "TRACK_BULK_MAX_EVENTS",
    "Batch",
    "BatchingError",
    "Checkpoint",
    "DecisionSpec",
    "EventApiSink",
    "EventMap",
    "EventSpec",
    "MappingError",
    "Pacer",
    "PacingError",
    "Quarantined",
    "Rejection",
    "ReplayError",
    "ReplayReport",
    "Replayer",
    "Sink",
    "TrackingSink",
    "body_prefix",
    "encode_visitors",
    "event_api_batches",
    "event_uuid",
    "from_visitor_log",
    "replay",
    "resend",
    "to_visitors",
    "tracking_batches",
    "tracking_records",
    "truncate_ip",
]
