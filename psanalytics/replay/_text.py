"""Text helpers the encoders share: deterministic uuid5s, JSON string quoting, IP truncation,
JSON number/boolean patterns."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid

import polars as pl

__all__ = ["REPLAY_NAMESPACE", "event_uuid", "truncate_ip", "truncate_ip_expr"]

#: Namespace of the deterministic per-event uuid5 (stable across releases: changing it
#: would make re-sends look like new events to the service).
REPLAY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/event")
_NS_BYTES = REPLAY_NAMESPACE.bytes
_USER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/user")


def event_uuid(name: str) -> str:
    """The deterministic uuid5 of one event (``name`` = its TrackId or content key)."""
    return str(uuid.uuid5(REPLAY_NAMESPACE, name))


def _uuid5_many(names: list[str], namespace: bytes = _NS_BYTES) -> pl.Series:
    """uuid5 over many names (same result as ``uuid.uuid5``): SHA-1 in one hashlib loop,
    version and variant bits and the 8-4-4-4-12 layout with Polars string ops."""
    sha1 = hashlib.sha1
    ns = namespace
    hx = pl.Series("h", [sha1(ns + s.encode()).hexdigest() for s in names], pl.String)
    variant = hx.str.slice(16, 1).replace_strict(_VARIANT, return_dtype=pl.String)
    return pl.select(
        pl.concat_str(
            [hx.str.slice(0, 8), pl.lit("-"), hx.str.slice(8, 4), pl.lit("-5"), hx.str.slice(13, 3),
             pl.lit("-"), variant, hx.str.slice(17, 3), pl.lit("-"), hx.str.slice(20, 12)]
        ).alias("_uuid")
    ).to_series()


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _json_str(expr: pl.Expr) -> pl.Expr:
    """JSON-encode a string expression (quotes and escapes), vectorised."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.head(-1).str.slice(5)


_V4 = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def truncate_ip(ip: str) -> str:
    """Zero the last octet of an IPv4 address or the last 80 bits of an IPv6 address.

    Returns "" for "" and leaves text that is not an IP address unchanged.
    """
    ip = ip.strip()
    if not ip:
        return ip
    if _V4.match(ip):
        return ip.rsplit(".", 1)[0] + ".0"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(addr) & 0xFFFFFF00))
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return "::ffff:" + str(ipaddress.IPv4Address(int(mapped) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(addr) & ~((1 << 80) - 1) & ((1 << 128) - 1)))


def truncate_ip_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`truncate_ip` (IPv4 by regex; IPv6 per distinct value)."""
    v4 = expr.str.replace(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", "${1}.0")
    return (
        pl.when(expr.str.contains(":"))
        .then(expr.map_elements(truncate_ip, return_dtype=pl.String, skip_nulls=True))
        .otherwise(v4)
    )


_NUMBER_TEXT = r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$"
_BOOL_TEXT = r"^(true|false)$"
