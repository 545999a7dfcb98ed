"""The APIs' limits as the client respects them: one client-side home for each number.

The emulator holds its own copy (``psanalytics/emulator/app.py``) as an independent
oracle of ``shared/spec/apis.md``: if one of these drifts from the spec, tests against the
emulator fail instead of both sides agreeing on the wrong number.
"""

from __future__ import annotations

__all__ = [
    "RESULT_WINDOW",
    "PREVIEW_CAP",
    "MAX_BULK_EVENTS",
    "MAX_EVENT_BYTES",
    "EVENT_API_MAX_BODY_BYTES",
    "TRACK_ID_CHARS",
]

#: Most rows one TrackEvents query may reach: the API needs ``$skip + $top < 10,000``.
RESULT_WINDOW = 9_999
#: Row cap of ``TrackEvents/preview`` (KQL).
PREVIEW_CAP = 1_000
#: Tracking API ``TrackBulk``: at most 100 events per request ...
MAX_BULK_EVENTS = 100
#: ... each at most 256 KB encoded (the client also keeps a whole batch under it).
MAX_EVENT_BYTES = 256 * 1024
#: The Optimizely Event API refuses bodies over 3.5 MB.
EVENT_API_MAX_BODY_BYTES = 3_500_000
#: The Tracking API keeps the first 64 characters of a ``trackId`` (its dedupe key).
TRACK_ID_CHARS = 64
