"""The Replayer's options, grouped as dlt groups a pipeline's configuration.

``Replayer(sink, mapping=..., limits=Limits(...), pacing=Pacing(...), files=Files(...))``.
The flat keyword names of earlier releases (``max_visitors=``, ``speed=``,
``checkpoint=``, ``event_map=``, ...) still work: :func:`split_options` sorts them into
their group (a flat keyword wins over the same field of a group passed alongside).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from psanalytics.replay.batching import MAX_BYTES, TRACK_BULK_MAX_EVENTS

__all__ = ["Files", "Limits", "MappingOptions", "Pacing", "split_options"]


@dataclass(frozen=True)
class Limits:
    """How much goes in a request and how many requests at once.

    ``max_visitors``: visitors per Event API body, objects per ODP request (500).
    ``max_bytes``: encoded body size (3,400,000; an oversized visitor is quarantined).
    ``max_events``: events per TrackBulk request (100). ``workers``: threads (at most
    ``2 x workers`` batches in flight). ``chunk_events``: events encoded per part
    without ``speed`` (sending starts while the next part is encoded)."""

    max_visitors: int = 500
    max_bytes: int = MAX_BYTES
    max_events: int = TRACK_BULK_MAX_EVENTS
    workers: int = 4
    chunk_events: int = 250_000


@dataclass(frozen=True)
class Pacing:
    """When batches leave: ``speed`` (original timing x speed, gaps capped at
    ``max_idle`` s; batches also close after ``flush_interval`` s of replay time),
    ``rate`` (events/s), ``requests_per_s``; ``clock``/``sleep`` injectable."""

    speed: float | None = None
    rate: float | None = None
    requests_per_s: float | None = None
    max_idle: float = 5.0
    flush_interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Files:
    """What is written: ``checkpoint`` (resumed when it exists unless ``resume=False``),
    ``dry_run`` (bodies, nothing sent), and the ``rejected``/``failed``/``quarantine``
    JSON-lines files (default next to the checkpoint or dry-run file)."""

    checkpoint: str | os.PathLike[str] | None = None
    resume: bool = True
    dry_run: str | os.PathLike[str] | None = None
    rejected: str | os.PathLike[str] | None = None
    failed: str | os.PathLike[str] | None = None
    quarantine: str | os.PathLike[str] | None = None


@dataclass(frozen=True)
class MappingOptions:
    """Event API visitor and body options (``mapping=`` holds the event map itself)."""

    event_map: Any = None
    project_id: str | None = None
    revision: str | None = None
    sessions: Any = None
    visitor_id: str = "DeviceId"
    anonymize_ip: bool = True
    truncate_ips: bool = False
    client_name: str = "psanalytics/replay"
    client_version: str | None = None


_GROUPS = {"limits": Limits, "pacing": Pacing, "files": Files, "mapping_options": MappingOptions}
_KEYS = {name: {f.name for f in fields(cls)} for name, cls in _GROUPS.items()}


def split_options(groups: Mapping[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"limits": Limits, "pacing": Pacing, "files": Files, "mapping_options": ...}`` from
    the groups given and the flat keywords; an unknown keyword is a TypeError naming it."""
    out: dict[str, Any] = {}
    for name, cls in _GROUPS.items():
        base = groups.get(name)
        if base is None:
            base = cls()
        elif isinstance(base, Mapping):
            base = cls(**dict(base))
        elif not isinstance(base, cls):
            raise TypeError(f"{name}= must be a {cls.__name__} (or a dict of its fields), not {type(base).__name__}")
        mine = {k: v for k, v in flat.items() if k in _KEYS[name]}
        out[name] = replace(base, **mine) if mine else base
    unknown = set(flat) - set().union(*_KEYS.values())
    if unknown:
        valid = ", ".join(sorted(set().union(*_KEYS.values())))
        raise TypeError(f"Replayer() got unexpected keyword arguments {sorted(unknown)}; "
                        f"group options in mapping=, limits=, pacing=, files= (flat names: {valid})")
    return out
