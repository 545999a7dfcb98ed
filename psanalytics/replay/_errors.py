"""The replay room's errors, below every module of the room (sinks, checkpoint and the
replayer all raise them)."""

from __future__ import annotations

from psanalytics.errors import PsaError

__all__ = ["ReplayError"]


class ReplayError(PsaError):
    """The replay could not start or had to stop (the message says why)."""
