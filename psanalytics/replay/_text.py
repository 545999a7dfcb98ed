"""Text helpers the encoders share: deterministic uuid5s, JSON string quoting, IP truncation,
JSON number/boolean patterns."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["REPLAY_NAMESPACE", "event_uuid", "truncate_ip", "truncate_ip_expr"]

#: Namespace of the deterministic per-event uuid5 (stable across releases: changing it
#: would make re-sends look like new events to the service).
REPLAY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/event")
_NS_BYTES = REPLAY_NAMESPACE.bytes
_USER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/psanalytics/replay/user")


def event_uuid(name: str) -> str:
    """The deterministic uuid5 of one event (``name`` = its TrackId or content key)."""
    return str(uuid.uuid5(REPLAY_NAMESPACE, name))


def _uuid5_many(names: list[str] | pl.Series, namespace: bytes = _NS_BYTES) -> pl.Series:
    """uuid5 over many names (same result as ``uuid.uuid5``): SHA-1 in one hashlib loop
    over the names' UTF-8 bytes, then the version and variant bits and the 8-4-4-4-12 hex
    layout on one numpy array of the digests (no Python object per uuid)."""
    if isinstance(names, pl.Series):
        raw = names.cast(pl.Binary).to_list()
    else:
        raw = [s.encode() for s in names]
    n = len(raw)
    sha1, ns = hashlib.sha1, namespace
    digests = np.frombuffer(b"".join([sha1(ns + b).digest() for b in raw]), dtype=np.uint8).reshape(n, 20)
    d = digests[:, :16].copy()
    d[:, 6] = (d[:, 6] & 0x0F) | 0x50  # version 5
    d[:, 8] = (d[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[d >> 4]
    hexed[:, 1::2] = _HEX[d & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in _UUID_LAYOUT:
        text[:, dst:dst + src[1] - src[0]] = hexed[:, src[0]:src[1]]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    return pl.Series("_uuid", arr, dtype=pl.String)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: (position in the 36-character text, (start, end) in the 32 hex digits)
_UUID_LAYOUT = ((0, (0, 8)), (9, (8, 12)), (14, (12, 16)), (19, (16, 20)), (24, (20, 32)))


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
