"""Hash functions: ``hash``/``hash_xxhash64`` (xxHash64, seed 0, as a signed long; with a
modulo: ``0 <= hash % mod < mod``) and ``hash_sha256``/``hash_sha1``/``hash_md5`` (hex
digests of the UTF-8 text).

xxHash64 is written out here (no xxhash package is installed) and checked against the
reference's documented values. What bytes Kusto hashes is documented only by those
examples: a string's UTF-8 bytes (``hash("World")`` is 1846988464401551951) and a
datetime's .NET ticks as 8 little-endian bytes (``hash(datetime("2015-01-01"))`` is
1380966698541616202). Other types are ``KqlUnsupported`` (hash their ``tostring()``)
rather than a guessed layout that would disagree with Kusto."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.functions._base import FUNC_IMPLS, V, _per_value, _s, args, fn
from psanalytics.query.kql.types import Table, Val

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler

_M = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                           9650029242287828579, 2870177450012600261)
#: .NET ticks (100 ns) at the Unix epoch
_EPOCH_TICKS = 621355968000000000


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def xxh64(data: bytes, seed: int = 0) -> int:
    """xxHash64 of ``data`` as an unsigned 64-bit int (the algorithm's reference
    description; ``xxh64(b"") == 0xEF46DB3751D8E999``)."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed & _M, (seed - _P1) & _M]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for x in v:
            h = ((h ^ _round(0, x)) * _P1 + _P4) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        lane = _round(0, int.from_bytes(data[i:i + 8], "little"))
        h = (_rotl(h ^ lane, 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * _P1 & _M), 23) * _P2
             + _P3) & _M
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * _P5 & _M), 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    return h ^ (h >> 32)


def _signed(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


@fn("hash", "hash_xxhash64")
def _hash(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 1, 2)
    v = a[0]
    if v.ktype == "string":
        x = v.expr
        to_bytes = str.encode
    elif v.ktype == "datetime":
        x = v.expr.cast(pl.Int64) // 100 + _EPOCH_TICKS
        def to_bytes(ticks: int) -> bytes:  # noqa: E306
            return ticks.to_bytes(8, "little", signed=True)
    else:
        raise c.sem(f"{e.name}() of a {v.ktype} value is not supported locally (the bytes "
                    "Kusto hashes are documented for strings and datetimes only): hash "
                    "tostring() of it", e.args[0], cls=KqlUnsupported)
    mod = None
    if len(a) > 1:
        m = a[1]
        if not m.is_const or m.ktype != "long" or m.const is None or m.const <= 0:
            raise c.sem(f"{e.name}() modulo must be a positive integer literal", e.args[1])
        mod = int(m.const)

    def one(value: object) -> int | None:
        if value is None:
            return None
        h = _signed(xxh64(to_bytes(value)))  # type: ignore[arg-type]
        return h if mod is None else h % mod

    r = x.map_batches(_per_value(one, pl.Int64), return_dtype=pl.Int64)
    return V(r, "long", v)


def _digest(name: str, algo: str) -> None:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        (a,) = args(c, e, t, 1)
        s = _s(c, a, e.args[0])
        r = s.expr.map_batches(
            _per_value(lambda x: None if x is None else
                       hashlib.new(algo, x.encode()).hexdigest(), pl.String),
            return_dtype=pl.String)
        return V(r.fill_null(""), "string", s, nullable=False)
    FUNC_IMPLS[name] = impl


_digest("hash_sha256", "sha256")
_digest("hash_sha1", "sha1")
_digest("hash_md5", "md5")
