"""Fault injection for the emulator: latency, error statuses, 429s, dropped connections,
truncated bodies. Seedable: the same seed and the same request order give the same faults.

A fault is decided *before* the route handler runs, so a faulted request never changes the
store (a truncated body is only ever applied to read-only routes).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# The route names faults accept, and the read-only ones, come from the one route table.
from psanalytics.emulator.routes import READ_ONLY_ROUTES, ROUTE_NAMES
from psanalytics.errors import PsaError

__all__ = ["Decision", "DroppedConnection", "Faults", "FaultsError", "READ_ONLY_ROUTES", "ROUTE_NAMES"]


class DroppedConnection(Exception):
    """Raised inside the app when a fault drops the connection and no socket is at hand
    (the in-process transports turn it into ``httpx.RemoteProtocolError``)."""


class FaultsError(PsaError, ValueError):
    """A fault specification could not be understood (the message names the key)."""


@dataclass
class Faults:
    """What can go wrong, and how often (probabilities per request, 0..1).

    ``latency``: seconds added to every matching request, or ``(lo, hi)`` drawn uniformly.
    ``error_rate``: answer one of ``error_statuses`` with the error envelope.
    ``rate_limit_rate``: answer 429 with ``Retry-After: retry_after`` (seconds such as "0"
    or "2", an HTTP date, or None for no header).
    ``drop_rate``: close the connection without any response.
    ``truncate_rate``: send a 200 whose body is cut off (read-only routes only).
    ``routes``: None for every API route, else names from :data:`ROUTE_NAMES`.
    ``drip_rate``: send the whole body slowly, in 10 pieces over ``drip_seconds``
    (read-only routes only; exercises client read timeouts).
    Faults never touch ``/_emulator/*``.
    """

    seed: int = 0
    latency: float | tuple[float, float] = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    rate_limit_rate: float = 0.0
    retry_after: str | None = "1"
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    routes: tuple[str, ...] | None = None
    drip_rate: float = 0.0
    drip_seconds: float = 1.0
    _rng: random.Random = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]
    _lock: threading.Lock = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if isinstance(self.latency, (list, tuple)):
            lo, hi = (float(x) for x in self.latency)
            if lo < 0 or hi < lo:
                raise FaultsError(f"latency range must be 0 <= lo <= hi, got {self.latency!r}")
            self.latency = (lo, hi)
        else:
            self.latency = float(self.latency)
            if self.latency < 0:
                raise FaultsError("latency must be >= 0 seconds")
        self.drip_seconds = float(self.drip_seconds)
        if self.drip_seconds < 0:
            raise FaultsError("drip_seconds must be >= 0")
        for name in ("error_rate", "rate_limit_rate", "drop_rate", "truncate_rate", "drip_rate"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise FaultsError(f"{name} must be between 0 and 1, got {v}")
            setattr(self, name, v)
        total = (self.error_rate + self.rate_limit_rate + self.drop_rate + self.truncate_rate
                 + self.drip_rate)
        if total > 1.0 + 1e-9:
            raise FaultsError(f"the fault rates add up to {total:.3f} > 1")
        self.error_statuses = tuple(int(s) for s in self.error_statuses)
        if not self.error_statuses or any(not 400 <= s <= 599 for s in self.error_statuses):
            raise FaultsError(f"error_statuses must be HTTP error codes, got {self.error_statuses!r}")
        if self.routes is not None:
            routes = (self.routes,) if isinstance(self.routes, str) else tuple(self.routes)
            bad = [r for r in routes if r.lower() not in ROUTE_NAMES]
            if bad:
                raise FaultsError(f"unknown route name(s) {bad}; known: {', '.join(ROUTE_NAMES)}")
            self.routes = tuple(r.lower() for r in routes)
        if self.retry_after is not None:
            self.retry_after = str(self.retry_after)
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, spec: Faults | Mapping[str, Any] | str | None) -> Faults | None:
        """A Faults from a Faults, a dict with the same keys, or ``"error_rate=0.1,seed=3"``."""
        if spec is None or isinstance(spec, Faults):
            return spec
        if isinstance(spec, str):
            return cls.parse(_parse_text(spec))
        if isinstance(spec, Mapping):
            known = {f.name for f in fields(cls) if f.init}
            bad = [k for k in spec if k not in known]
            if bad:
                raise FaultsError(f"unknown fault key(s) {bad}; known: {', '.join(sorted(known))}")
            kw = dict(spec)
            if isinstance(kw.get("error_statuses"), int):
                kw["error_statuses"] = (kw["error_statuses"],)
            try:
                return cls(**kw)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, FaultsError):
                    raise
                raise FaultsError(f"bad fault value: {exc}") from None
        raise FaultsError(f"faults must be a Faults, a dict or a string, not {type(spec).__name__}")

    def to_dict(self) -> dict[str, Any]:
        # not asdict(): it deep-copies every field, including the private lock
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        for k in ("latency", "error_statuses", "routes"):
            if isinstance(d.get(k), tuple):
                d[k] = list(d[k])
        return d

    # ------------------------------------------------------------------ decisions
    def applies(self, route: str | None) -> bool:
        return route is not None and (self.routes is None or route in self.routes)

    def decide(self, route: str | None) -> Decision:
        """Draw the fault for one request on ``route`` (thread-safe, seeded)."""
        if not self.applies(route):
            return Decision()
        with self._lock:
            rng = self._rng
            if isinstance(self.latency, tuple):
                delay = rng.uniform(*self.latency)
            else:
                delay = float(self.latency)
            u = rng.random()
            pick = rng.choice(self.error_statuses)
            cut = rng.random()
        kind = None
        edge = self.drop_rate
        if u < edge:
            kind = "drop"
        elif u < (edge := edge + self.rate_limit_rate):
            kind = "rate_limit"
        elif u < (edge := edge + self.error_rate):
            kind = "error"
        elif u < (edge := edge + self.truncate_rate):
            kind = "truncate" if route in READ_ONLY_ROUTES else None
        elif u < edge + self.drip_rate and route in READ_ONLY_ROUTES:
            kind = "drip"
        return Decision(delay=delay, kind=kind, status=pick if kind == "error" else None, cut=cut)


@dataclass(frozen=True)
class Decision:
    """The fault drawn for one request."""

    delay: float = 0.0
    kind: str | None = None  # None | "drop" | "rate_limit" | "error" | "truncate" | "drip"
    status: int | None = None
    cut: float = 0.5  # fraction of the body kept when truncating


def _parse_text(text: str) -> dict[str, Any]:
    """``"error_rate=0.1,latency=0.01,seed=3"`` (latency ``0.01-0.05`` for a range;
    ``error_statuses=500/503``, ``routes=trackevents/preview``, ``retry_after=none``)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise FaultsError(f"expected key=value in the fault spec, got {part!r}")
        key, value = (s.strip() for s in part.split("=", 1))
        try:
            if key == "seed":
                out[key] = int(value)
            elif key == "latency":
                if "-" in value.lstrip("-")[0:] and not value.startswith("-"):
                    lo, hi = value.split("-", 1)
                    out[key] = (float(lo), float(hi))
                else:
                    out[key] = float(value)
            elif key in ("error_rate", "rate_limit_rate", "drop_rate", "truncate_rate", "drip_rate",
                         "drip_seconds"):
                out[key] = float(value)
            elif key == "error_statuses":
                out[key] = tuple(int(s) for s in value.replace("|", "/").split("/") if s)
            elif key == "routes":
                out[key] = tuple(s for s in value.replace("|", "/").split("/") if s)
            elif key == "retry_after":
                out[key] = None if value.lower() in ("none", "") else value
            else:
                raise FaultsError(f"unknown fault key {key!r}")
        except ValueError as exc:
            if isinstance(exc, FaultsError):
                raise
            raise FaultsError(f"bad value for {key}: {value!r}") from None
    return out
