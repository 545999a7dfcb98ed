"""The Event API event map: EventType -> entity, revenue/value paths, decisions, attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from psanalytics.errors import PsaError

__all__ = ["ACTIVATE_EVENT_KEY", "DecisionSpec", "EventMap", "EventSpec", "MappingError"]

#: The key the Event API (and the SDKs) give to a campaign activation event.
ACTIVATE_EVENT_KEY = "campaign_activated"


class MappingError(PsaError, ValueError):
    """The events or the event map cannot be turned into Event API visitors."""




@dataclass(frozen=True)
class DecisionSpec:
    """A campaign activation recorded with an event (impression).

    Each id is a literal string, or ``"$.path"`` to read it from the event's Payload
    (JSONPath, e.g. ``"$.variation.id"``). ``metadata`` follows the SDK's decision
    metadata (``flag_key``, ``rule_key``, ``rule_type``, ``variation_key``, ``enabled``);
    missing keys are filled from the ids.
    """

    campaign_id: str
    experiment_id: str
    variation_id: str
    is_campaign_holdback: bool | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EventSpec:
    """How one Profile Store ``EventType`` becomes an Event API event.

    ``entity_id``/``key``: the Optimizely event id and key. ``revenue``: Payload path of
    an amount in currency units, sent as integer cents. ``value``: Payload path of a
    numeric value. ``tags``: send the Payload's top-level scalars as tags. ``decision``:
    the event is a campaign activation (sent as ``campaign_activated`` with a decision).
    ``skip``: do not send this event type.
    """

    entity_id: str
    key: str
    revenue: str | None = None
    value: str | None = None
    tags: bool = True
    decision: DecisionSpec | None = None
    skip: bool = False


def _path(p: str | None) -> str | None:
    if p is None:
        return None
    p = p.strip()
    if p.startswith("$"):
        return p
    if p.startswith("Payload."):
        p = p[len("Payload."):]
    return "$." + p


@dataclass
class EventMap:
    """EventType -> Event API entity, plus visitor attributes.

    ``events`` maps an EventType to an entity id (``"order": "7001"``), to a dict
    (``{"entity_id": "7001", "key": "purchase", "revenue": "total"}``, with
    ``"decision": {"campaign_id": ..., "experiment_id": ..., "variation_id": ...}`` for an
    activation, or ``"skip": True``), or to an :class:`EventSpec`.

    ``unmapped``: what to do with an EventType the map does not name: ``"keep"`` (send it
    with ``entity_id = key = EventType``), ``"skip"`` or ``"error"``.

    ``revenue``: EventType -> Payload path for types that carry money when the map does
    not say (default: ``order`` -> ``total``).

    ``attributes``: visitor attribute key -> source column (``CountryCode``, ``City``,
    ``Scope``, ...) or ``(entity_id, column)``; the value is the visitor's first non-empty
    value. Default ``{"country": "CountryCode"}``. Only the attributes named here are
    sent (an allowlist).

    ``scrub_pii`` (default True): tags whose key names personal data (``email``,
    ``phone``, ``firstName``, ``lastName``, ``address``, ...) or whose text value holds an
    e-mail address are not sent.
    """

    events: Mapping[str, str | Mapping[str, Any] | EventSpec] = field(default_factory=dict)
    unmapped: Literal["keep", "skip", "error"] = "keep"
    revenue: Mapping[str, str] = field(default_factory=lambda: {"order": "total"})
    attributes: Mapping[str, str | tuple[str, str]] = field(
        default_factory=lambda: {"country": "CountryCode"}
    )
    scrub_pii: bool = True

    @classmethod
    def of(cls, value: EventMap | Mapping[str, Any] | None) -> EventMap:
        """Coerce ``None``, a plain ``{EventType: entity}`` dict, a dict of the whole map
        (``{"events": {...}, "unmapped": "skip", "attributes": {"market": ["9001", "Scope"]}}``,
        as a JSON file holds it), or an EventMap."""
        if value is None:
            return cls()
        if isinstance(value, EventMap):
            return value
        if isinstance(value, Mapping):
            full = {"events", "unmapped", "revenue", "attributes"}
            if isinstance(value.get("events"), Mapping) and set(value) <= full:
                # the whole EventMap as a dict (e.g. a JSON file for the CLI)
                attrs = {k: tuple(v) if isinstance(v, list) else v
                         for k, v in dict(value.get("attributes", {"country": "CountryCode"})).items()}
                return cls(events=dict(value["events"]), unmapped=value.get("unmapped", "keep"),
                           revenue=dict(value.get("revenue", {"order": "total"})), attributes=attrs)
            return cls(events=dict(value))
        raise MappingError(f"event_map must be a dict or an EventMap, not {type(value).__name__}")

    def spec(self, event_type: str) -> EventSpec | None:
        """The spec for one EventType (None when it is skipped)."""
        raw = self.events.get(event_type)
        if raw is None:
            if self.unmapped == "skip":
                return None
            if self.unmapped == "error":
                raise MappingError(
                    f"EventType {event_type!r} is not in the event map (unmapped='error'); "
                    f"map it or pass unmapped='keep'/'skip'"
                )
            return EventSpec(entity_id=event_type, key=event_type,
                             revenue=_path(self.revenue.get(event_type)))
        if isinstance(raw, EventSpec):
            spec = raw
        elif isinstance(raw, str):
            spec = EventSpec(entity_id=raw, key=event_type, revenue=_path(self.revenue.get(event_type)))
        elif isinstance(raw, Mapping):
            unknown = set(raw) - {"entity_id", "key", "revenue", "value", "tags", "decision", "skip"}
            if unknown:
                raise MappingError(
                    f"event map entry {event_type!r} has unknown keys {sorted(unknown)}; allowed: "
                    "entity_id, key, revenue, value, tags, decision, skip"
                )
            dec = raw.get("decision")
            if dec is not None and not isinstance(dec, DecisionSpec):
                try:
                    dec = DecisionSpec(**dict(dec))
                except TypeError as exc:
                    raise MappingError(f"event map entry {event_type!r}: bad decision: {exc}") from None
            spec = EventSpec(
                entity_id=str(raw.get("entity_id", event_type)),
                key=str(raw.get("key", event_type)),
                revenue=_path(raw.get("revenue", self.revenue.get(event_type))),
                value=_path(raw.get("value")),
                tags=bool(raw.get("tags", True)),
                decision=dec,
                skip=bool(raw.get("skip", False)),
            )
        else:
            raise MappingError(f"event map entry {event_type!r} must be a str, dict or EventSpec")
        return None if spec.skip else spec
