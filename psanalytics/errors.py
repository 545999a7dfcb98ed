"""One exception family for psanalytics. Every message says what went wrong and where.

Catch :class:`PsaError` to catch everything psanalytics raises on purpose; catch a branch
to handle one kind. A new exception class goes into this tree in the same commit. The tree below is the whole family (``tests/foundation/
test_foundation_errors.py`` checks it against the real classes, so it stays true).
Classes marked ``ValueError`` also inherit the builtin, because they report a bad value
the caller passed and code written as ``except ValueError`` must keep catching them.
Each room defines its own classes next to the code that raises them (its message
formatting needs that room's vocabulary); the shared ones live here.

Exceptions::

    PsaError
    ├── InputError (ValueError) .............. errors: a file or record could not be read (file:line)
    │   └── ProfileFormatError ............... wire.profiles: a profile not as the Profiles API returns it
    ├── SchemaError (ValueError) ............. errors: input could not become the events frame
    │   └── NdjsonError ...................... wire.ndjson: a JSON line could not be read (file:line)
    ├── TimeError (ValueError) ............... errors: not an ISO 8601 instant / a duration, or out of range
    ├── ArgumentError (ValueError) ........... errors: an argument that cannot work (names it)
    ├── ODataError (ValueError) .............. query.odata: a $filter / $orderby we cannot read
    ├── KqlError (ValueError) ................ query.kql.errors: with line:column and a caret
    │   ├── KqlSyntaxError
    │   ├── KqlSemanticError
    │   ├── KqlUnsupported
    │   └── KqlRuntimeError
    ├── SessionizeError (ValueError) ......... errors: bad input to sessionize() / stitch()
    │   └── JourneyError ..................... errors: bad input to a journeys function
    ├── ApiError ............................. api.http: an HTTP request failed (names it)
    │   ├── RetryAfterTooLong ................ api.http: Retry-After beyond the policy's cap
    │   ├── EventApiRejected ................. api.event_api: the Event API refused a batch
    │   └── OdpRejected ...................... api.odp: ODP refused events (lists the invalid ones)
    ├── ApiKeyError (ValueError) ............. api.http: a key that cannot be sent as a header
    ├── WindowOverflowError .................. api.windows: one instant holds > 9,999 events
    ├── ExportError .......................... api.export: cannot write there (not our folder, locked)
    ├── OrderError ........................... api.profile_store: rows came out of order
    ├── ProfilesError ........................ api.profiles: profiles that cannot be paged exactly
    ├── ReplayError .......................... replay.replayer: a replay could not start/go on
    ├── PacingError (ValueError) ............. replay.pacing: bad pacing options
    ├── BatchingError (ValueError) ........... replay.batching: an event that cannot be batched
    ├── MappingError (ValueError) ............ replay.mapping: an event that cannot be mapped
    ├── FaultsError (ValueError) ............. emulator.faults: a fault spec we cannot read
    ├── KqlMagicError ........................ jupyter.magic: bad %kql arguments
    └── ChartDataError (ValueError) .......... jupyter.charts: a frame a chart cannot draw

Warnings::

    PsaWarning (UserWarning)
    ├── DeprecatedArgumentWarning ............ journeys: an old argument name still works, one more release
    ├── SkippedInputWarning .................. exports: on_error="skip" left lines out
    └── PreviewTruncatedWarning .............. api.profile_store: a preview hit the 1,000-row cap

``warnings.filterwarnings("ignore", category=PsaWarning)`` silences all of ours.
"""

from __future__ import annotations

__all__ = [
    "PsaError",
    "PsaWarning",
    "InputError",
    "SchemaError",
    "TimeError",
    "ArgumentError",
    "SessionizeError",
    "JourneyError",
]


class PsaError(Exception):
    """Root of every error psanalytics raises on purpose."""


class PsaWarning(UserWarning):
    """Root of every warning psanalytics emits."""


class SchemaError(PsaError, ValueError):
    """Input could not be turned into the canonical events frame."""


class InputError(PsaError, ValueError):
    """A file or record could not be read; the message names the file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class TimeError(PsaError, ValueError):
    """Text that is not an ISO 8601 instant or a duration, or an instant outside what a
    nanosecond time holds (1677-09-21 .. 2262-04-11). The message quotes the value."""


class ArgumentError(PsaError, ValueError):
    """A function was called with an argument that cannot work (a bad value or a bad
    combination); the message names the argument and what it accepts."""


class SessionizeError(PsaError, ValueError):
    """Bad arguments or input for :func:`~psanalytics.sessionize` or :func:`~psanalytics.stitch`."""


class JourneyError(SessionizeError):
    """Bad arguments or input for a journeys function (paths, funnels, retention,
    attribution). A :class:`SessionizeError` too: journeys sessionize first, and code
    that catches that keeps working."""
