"""Track events <-> Optimizely Event API visitors (the mapping room's public face).

The room is split by concern:

- :mod:`~psanalytics.replay.event_map`: ``EventMap``/``EventSpec``/``DecisionSpec``;
- :mod:`~psanalytics.replay.inputs`: any source -> canonical frame, sessions, visitor ids;
- :mod:`~psanalytics.replay.encoder`: the columnar Event API encoder
  (:func:`encode_visitors`, :func:`to_visitors`, :func:`body_prefix`);
- :mod:`~psanalytics.replay.tags`: Payload scalars as tags, personal data scrubbed;
- :mod:`~psanalytics.replay.visitor_log`: :func:`from_visitor_log` reads bodies back;
- :mod:`~psanalytics.replay._text`: uuid5s, JSON quoting, IP truncation.

Everything is re-exported here, so ``from psanalytics.replay.mapping import ...`` keeps
working.
"""

from __future__ import annotations

from psanalytics.replay._text import (  # noqa: F401 - re-exported
    _BOOL_TEXT,
    _NS_BYTES,
    _NUMBER_TEXT,
    _USER_NAMESPACE,
    REPLAY_NAMESPACE,
    _json_str,
    _uuid5_many,
    event_uuid,
    truncate_ip,
    truncate_ip_expr,
)
from psanalytics.replay.encoder import (  # noqa: F401 - re-exported
    _empty_visitors,
    _encode_resolved,
    _with_decisions,
    body_prefix,
    encode_visitor_chunks,
    encode_visitors,
    to_visitors,
)
from psanalytics.replay.event_map import (
    ACTIVATE_EVENT_KEY,
    DecisionSpec,
    EventMap,
    EventSpec,
    MappingError,
)
from psanalytics.replay.inputs import _as_frame, _resolve, sample_mask  # noqa: F401 - re-exported
from psanalytics.replay.tags import (  # noqa: F401 - re-exported
    _EMAIL_IN_TEXT,
    _EMAIL_RE,
    _PII_KEY,
    _mixed_types,
    _tags_column,
    _tags_py,
)
from psanalytics.replay.visitor_log import from_visitor_log

__all__ = [
    "ACTIVATE_EVENT_KEY",
    "DecisionSpec",
    "EventMap",
    "EventSpec",
    "MappingError",
    "REPLAY_NAMESPACE",
    "body_prefix",
    "encode_visitors",
    "event_uuid",
    "from_visitor_log",
    "sample_mask",
    "to_visitors",
    "truncate_ip",
    "truncate_ip_expr",
]
