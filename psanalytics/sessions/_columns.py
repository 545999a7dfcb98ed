"""Per-session aggregates of the full sessions table: event-type counts, unique pages,
source SessionIds, the gap to the previous session, entry UTM parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from psanalytics.sessions._kernel import _Cut, _hash_np, _to_np


@dataclass
class _Ctx:
    df: pl.DataFrame
    cut: _Cut
    order: np.ndarray | None  # sorted-session order -> output order (None: identity)
    n: int
    ns: int
    key: np.ndarray  # per sorted event: its session's output row (session_key)

    def out(self, per_sorted_session: np.ndarray) -> np.ndarray:
        return per_sorted_session if self.order is None else per_sorted_session[self.order]


def _type_counts(
    ctx: _Ctx,
    pageview_types: Sequence[str],
    conversion_types: Sequence[str],
    event_types: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, pl.Series | None]:
    """Per session: page views, conversions and the ``event_counts`` struct (fields sorted by name)."""
    ns = ctx.ns
    if "EventType" not in ctx.df.schema:
        return np.zeros(ns, np.int64), np.zeros(ns, np.int64), None
    et = ctx.df.get_column("EventType").fill_null("")
    names = sorted(et.unique().to_list() if event_types is None else event_types)
    k = len(names)
    if k == 0:
        return np.zeros(ns, np.int64), np.zeros(ns, np.int64), None
    # codes via the hash: the names' own hashes are the lookup table
    name_h = pl.Series(names, dtype=pl.String).hash(seed=13).to_numpy()
    small = np.uint8 if k < 256 else np.int64
    if np.unique(name_h).size == k:
        # codes in input order (sequential), then one gather of small codes by perm
        by_hash = np.argsort(name_h)
        codes = by_hash.astype(small)[np.searchsorted(name_h[by_hash], _hash_np(et, 13))]
    else:  # pragma: no cover - two type names share a 64-bit hash
        codes = _to_np(et.cast(pl.Enum(names)).to_physical(), small)
    idx = ctx.key.astype(np.int64)
    idx *= k
    idx += codes[ctx.cut.perm]
    del codes
    counts = np.bincount(idx, minlength=ns * k).reshape(ns, k)
    del idx
    pv = [i for i, nm in enumerate(names) if nm in set(pageview_types)]
    conv = [i for i, nm in enumerate(names) if nm in set(conversion_types)]
    n_pv = counts[:, pv].sum(axis=1) if pv else np.zeros(ns, np.int64)
    n_conv = counts[:, conv].sum(axis=1) if conv else np.zeros(ns, np.int64)
    ct = np.ascontiguousarray(counts.T, dtype=np.uint32)
    struct = pl.DataFrame([pl.Series(nm, ct[i]) for i, nm in enumerate(names)]).to_struct(
        "event_counts"
    )
    return n_pv, n_conv, struct


def _unique_pages(ctx: _Ctx, page: pl.Series) -> np.ndarray:
    """Distinct ``PageUri`` per session: sort packed (session, page code) keys once."""
    n, ns = ctx.n, ctx.ns
    if n == 0:
        return np.zeros(0, np.int64)
    # Page codes: the high 32 bits of a 64-bit hash when they are injective over the
    # distinct pages of the data (checked), else exact dictionary codes.
    ph = page.hash(seed=11)
    u = ph.unique()
    if pl.Series(u.to_numpy() >> np.uint64(32)).n_unique() == u.len():
        pcode = ph.to_numpy()[ctx.cut.perm]
        pcode >>= np.uint64(32)
    else:
        pcode = page.cast(pl.Categorical).to_physical().to_numpy().astype(np.uint64)[ctx.cut.perm]
    del ph, u
    pk = ctx.key.astype(np.uint64)
    pk <<= np.uint64(32)
    pk |= pcode
    del pcode
    pk.sort()
    distinct = np.empty(n, dtype=bool)
    distinct[0] = True
    np.not_equal(pk[1:], pk[:-1], out=distinct[1:])
    return np.bincount((pk[distinct] >> np.uint64(32)).astype(np.int64), minlength=ns)


def _source_session_ids(ctx: _Ctx) -> pl.Series:
    """Distinct Profile Store ``SessionId`` values per session (UInt16, saturating)."""
    n, ns, cut = ctx.n, ctx.ns, ctx.cut
    if "SessionId" not in ctx.df.schema:
        return pl.Series("source_session_ids", np.zeros(ns, np.uint16))
    hs = ctx.df.get_column("SessionId").hash(seed=7).to_numpy()[cut.perm]
    change = np.zeros(n, dtype=bool)
    if n:
        np.not_equal(hs[1:], hs[:-1], out=change[1:])
    change[cut.starts] = False
    src = np.ones(ns, dtype=np.int64)
    multi = np.zeros(ns, dtype=bool)
    multi[ctx.key[change]] = True
    if multi.any():
        # Only sessions whose id changes need a distinct count.
        sel = multi[ctx.key]
        agg = (
            pl.DataFrame({"s": ctx.key[sel], "h": hs[sel]})
            .group_by("s")
            .agg(pl.col("h").n_unique())
        )
        src[agg["s"].to_numpy()] = agg["h"].to_numpy()
    return pl.Series("source_session_ids", np.minimum(src, 65535).astype(np.uint16))


def _gap_before(ctx: _Ctx) -> np.ndarray:
    """Seconds since the same device's previous session ended (NaN for a device's first)."""
    cut = ctx.cut
    gap = np.full(ctx.ns, np.nan)
    if ctx.ns > 1:
        gap[1:] = (cut.t[cut.starts[1:]] - cut.t[cut.ends[:-1]]) / 1e9
    gap[cut.dev_start] = np.nan
    return ctx.out(gap)


#: What ``_entry_utm`` looks for in ``Payload``: a payload without it contributes nothing.
_UTM_JSON = "utm_|referr"


def payload_for_utm(col: str = "Payload") -> pl.Expr:
    """``Payload`` where it can hold UTM or referrer keys, else null: all the kernel reads of
    it (the bucketed path spills this instead of the whole JSON text)."""
    return pl.when(pl.col(col).str.contains(_UTM_JSON)).then(pl.col(col)).alias(col)


def _entry_utm(entry_page: pl.Series, payload: pl.Series | None) -> list[pl.Series]:
    """Entry UTM source/medium/campaign from the first ``PageUri`` query string, else from the
    ``Payload`` JSON (``"utm_source": ...``); the referrer host from ``Payload.referrer``."""
    names = ("entry_utm_source", "entry_utm_medium", "entry_utm_campaign", "entry_referrer_host")
    ns = entry_page.len()
    frame = pl.DataFrame(
        {
            "p": entry_page,
            "j": payload
            if payload is not None
            else pl.repeat(None, ns, dtype=pl.String, eager=True),
        }
    )
    cand = frame.select(
        pl.col("p").str.contains("utm_", literal=True)
        | pl.col("j").str.contains(_UTM_JSON).fill_null(False)
    ).to_series()
    idx = cand.arg_true()
    empty = [pl.repeat(None, ns, dtype=pl.String, eager=True).alias(nm) for nm in names]
    if idx.len() == 0:
        return empty

    def from_url(k: str) -> pl.Expr:
        return (
            pl.col("p")
            .str.extract(rf"[?&]{k}=([^&#]*)", 1)
            .str.replace_all(r"\+", " ")
            .replace("", None)
        )

    def from_json(k: str) -> pl.Expr:
        return pl.col("j").str.extract(rf'"{k}"\s*:\s*"([^"]*)"', 1).replace("", None)

    res = frame[idx].select(
        pl.coalesce(from_url("utm_source"), from_json("utm_source")).alias(names[0]),
        pl.coalesce(from_url("utm_medium"), from_json("utm_medium")).alias(names[1]),
        pl.coalesce(from_url("utm_campaign"), from_json("utm_campaign")).alias(names[2]),
        pl.coalesce(from_json("referrer"), from_json("referer"))
        .str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)", 1)
        .str.to_lowercase()
        .alias(names[3]),
    )
    out = []
    for nm, full, part in zip(names, empty, res.get_columns(), strict=True):
        if (
            nm != "entry_referrer_host"
            and part.null_count() < part.len()
            and part.str.contains("%").any()
        ):
            from urllib.parse import unquote_plus

            part = part.map_elements(unquote_plus, return_dtype=pl.String)
        out.append(full.scatter(idx, part).alias(nm))
    return out
