"""ODP customer updates (``POST /v3/profiles``): from the events' users, or from Profile
Store's own profiles.

:func:`encode_odp_profiles` builds one update per (``User.Email``, device) pair seen in
the events; :func:`encode_odp_customers` turns Profile Store profiles (the frame
``store.profiles()`` returns, or a file: :func:`psanalytics.wire.profiles.read_profiles`)
into updates, one per (profile, device). Both return rows with the exact JSON text of
each object (``json``, ``nbytes``, ...), which :func:`psanalytics.replay.odp.odp_batches`
groups into request arrays. docs/odp.md has the attribute table.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from psanalytics.replay.inputs import _as_frame
from psanalytics.replay.odp_payload import field_name

__all__ = ["encode_odp_customers", "encode_odp_profiles"]


def encode_odp_profiles(events: Any, *, info: bool = True) -> pl.DataFrame:
    """Customer updates for ``POST /v3/profiles``: one row per (e-mail, device) seen together.

    Each object: ``{"attributes": {"email", "vuid", "first_name", "last_name", "ps_name",
    "ps_info_*"}}`` from the latest non-empty ``User.Name`` (split at the first space)
    and ``User.Info`` (when the frame has it) of that address. Sending ``vuid`` with
    ``email`` links the device to the customer. Columns: ``json``, ``nbytes``, ``email``,
    ``vuid``, ``ms`` (the pair's last event, epoch ms).
    """
    frame, _ = _as_frame(events)
    e = pl.col("User").struct.field("Email")
    n = pl.col("User").struct.field("Name")
    has_info = info and "Info" in [f.name for f in frame.schema["User"].fields]  # type: ignore[union-attr]
    seen = frame.filter(e != "").select(
        e.alias("email"), pl.col("DeviceId").alias("vuid"), n.alias("name"),
        (pl.col("User").struct.field("Info") if has_info else pl.lit(None, pl.String)).alias("info"),
        pl.col("EventTime"),
    ).sort("EventTime")
    if seen.height == 0:
        return pl.DataFrame(schema={"json": pl.String, "nbytes": pl.Int64, "email": pl.String,
                                    "vuid": pl.String, "ms": pl.Int64})
    per_email = seen.group_by("email").agg(
        pl.col("name").filter(pl.col("name") != "").last().alias("name"),
        pl.col("info").drop_nulls().last().alias("info"),
    )
    pairs = seen.filter(pl.col("vuid") != "").group_by(["email", "vuid"]).agg(
        pl.col("EventTime").max().dt.epoch("ms").alias("ms"))
    rows = []
    for email, vuid, ms, name, inf in pairs.join(per_email, on="email").sort(["email", "vuid"]).iter_rows():
        attrs: dict[str, Any] = {"email": email, "vuid": vuid}
        if name:
            first, _, last = name.strip().partition(" ")
            attrs["first_name"] = first
            if last.strip():
                attrs["last_name"] = last.strip()
            attrs["ps_name"] = name
        if inf:
            try:
                d = orjson.loads(inf) if isinstance(inf, str) else inf
            except orjson.JSONDecodeError:
                d = None
            if isinstance(d, dict):
                for k, v in d.items():
                    if v is not None and not isinstance(v, (dict, list)):
                        attrs.setdefault(field_name("info", k), v)
        text = orjson.dumps({"attributes": attrs}).decode()
        rows.append((text, len(text.encode()), email, vuid, ms))
    return pl.DataFrame(rows, schema={"json": pl.String, "nbytes": pl.Int64, "email": pl.String,
                                      "vuid": pl.String, "ms": pl.Int64}, orient="row")


_CUSTOMER_SCHEMA = {"json": pl.String, "nbytes": pl.Int64, "email": pl.String, "vuid": pl.String,
                    "ms": pl.Int64, "profile_id": pl.String}


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    """Scalars of a JSON object as ``prefix_<path>`` attributes (nested objects walked,
    arrays and nulls left out: ODP attributes are scalars)."""
    stack = [((), obj)]
    while stack:
        path, o = stack.pop(0)
        if isinstance(o, dict):
            stack.extend(((*path, str(k)), v) for k, v in o.items())
        elif path and o is not None and not isinstance(o, list):
            out.setdefault(field_name(prefix, *path), o)


def encode_odp_customers(profiles: Any, *, invalid_out: list[tuple[str, str]] | None = None) -> pl.DataFrame:
    """Profile Store profiles -> ODP customer updates, one per (profile, device).

    ``profiles``: a profiles frame (``store.profiles()``), API profile objects, or a
    file (see :func:`psanalytics.wire.profiles.read_profiles`). Each object is
    ``{"attributes": {...}}`` with ``email`` (``Info.Email``), ``vuid`` (one of
    ``DeviceIds``: sending both links the device to the customer), ``first_name`` /
    ``last_name`` / ``ps_name`` (``Name``, split at the first space), ``ps_profile_id``,
    ``ps_scope``, ``ps_visits``, ``ps_first_seen`` / ``ps_last_seen`` /
    ``ps_update_time`` (epoch seconds), ``ps_profile_manager``,
    ``ps_contact_information`` (the list joined by ``,``), ``ps_info_<key>`` (the other
    ``Info`` fields), ``ps_payload_<path>`` (``Payload`` scalars) and ``ps_extra_<key>``
    (keys outside the profile model), each only when present. A profile with no
    devices is one update by ``email``. A profile with neither an address nor a
    device cannot be sent (ODP needs an identifier): it is appended to ``invalid_out``
    as ``(ProfileId, profile JSON)`` for the report, never dropped silently.

    Columns: ``json``, ``nbytes``, ``email``, ``vuid``, ``ms`` (LastSeen, epoch ms),
    ``profile_id``; in profile order, devices sorted within a profile.
    """
    from psanalytics.wire.profiles import profiles_json_lines, read_profiles

    frame = read_profiles(profiles)
    secs = frame.with_columns(pl.col(c).dt.epoch("s").alias(c) for c in ("FirstSeen", "LastSeen", "UpdateTime"))
    lines = profiles_json_lines(frame) if invalid_out is not None else None
    rows = []
    for i, p in enumerate(secs.iter_rows(named=True)):
        info = orjson.loads(p["Info"]) if p["Info"] else {}
        info = info if isinstance(info, dict) else {"value": info}
        email = info.get("Email")
        email = email.strip() if isinstance(email, str) and email.strip() else None
        attrs: dict[str, Any] = {}
        name = (p["Name"] or "").strip()
        if name:
            first, _, last = name.partition(" ")
            attrs["first_name"] = first
            if last.strip():
                attrs["last_name"] = last.strip()
            attrs["ps_name"] = p["Name"]
        for key, col in (("ps_profile_id", "ProfileId"), ("ps_scope", "Scope"), ("ps_visits", "Visits"),
                         ("ps_first_seen", "FirstSeen"), ("ps_last_seen", "LastSeen"),
                         ("ps_update_time", "UpdateTime"), ("ps_profile_manager", "ProfileManager")):
            if p[col] is not None and p[col] != "":
                attrs[key] = p[col]
        if p["ContactInformation"]:
            attrs["ps_contact_information"] = ",".join(p["ContactInformation"])
        _flatten("info", {k: v for k, v in info.items() if k != "Email"}, attrs)
        if p["Payload"]:
            _flatten("payload", orjson.loads(p["Payload"]), attrs)
        if p["Extra"]:
            _flatten("extra", orjson.loads(p["Extra"]), attrs)
        devices = sorted({d for d in (p["DeviceIds"] or []) if d})
        if not devices and email is None:
            if invalid_out is not None and lines is not None:
                invalid_out.append((p["ProfileId"] or "", lines[i]))
            continue
        ms = 0 if p["LastSeen"] is None else p["LastSeen"] * 1000
        for vuid in devices or [None]:
            ids = {k: v for k, v in (("email", email), ("vuid", vuid)) if v is not None}
            text = orjson.dumps({"attributes": {**ids, **attrs}}).decode()
            rows.append((text, len(text.encode()), email, vuid, ms, p["ProfileId"]))
    return pl.DataFrame(rows, schema=_CUSTOMER_SCHEMA, orient="row")
