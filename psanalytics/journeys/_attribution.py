"""Conversion attribution: crediting orders (and their revenue) to the sessions before them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from psanalytics.journeys._channels import channel
from psanalytics.journeys._common import JourneyError, _hash, duration, frame, hashes

MODELS = ("first", "last", "linear", "position")

#: Prefix of the key of a device without a stitched e-mail (``key="user"``).
DEVICE_PREFIX = "device:"


def orders(events: pl.DataFrame | pl.LazyFrame, *, event_type: str = "order") -> pl.DataFrame:
    """Conversions from order events: ``DeviceId``, ``EventTime``, ``order_id``, ``revenue``
    (Float64, the Payload's ``total``) and ``currency`` (the Payload's ``currency``), one row per
    ``EventType == event_type`` event (nulls where the Payload lacks them; nothing is dropped)."""
    df = frame(events)
    for c in ("DeviceId", "EventTime", "EventType", "Payload"):
        if c not in df.schema:
            raise JourneyError(f"orders() needs the {c} column")
    o = df.filter(pl.col("EventType") == event_type)
    return o.select(
        "DeviceId",
        "EventTime",
        pl.col("Payload").str.json_path_match("$.orderId").alias("order_id"),
        pl.col("Payload")
        .str.json_path_match("$.total")
        .cast(pl.Float64, strict=False)
        .alias("revenue"),
        pl.col("Payload").str.json_path_match("$.currency").alias("currency"),
    )


def attribute(
    conversions: pl.DataFrame | pl.LazyFrame,
    sessions: pl.DataFrame | pl.LazyFrame,
    *,
    model: str = "last",
    lookback: str | timedelta | float = "30d",
    by: str = "channel",
    key: str = "DeviceId",
    revenue: str | None = "revenue",
    currency: str | None = "currency",
    ignore_direct: bool = False,
    position_weights: tuple[float, float] = (0.4, 0.4),
) -> pl.DataFrame:
    """Credit conversions (and their revenue) to channels.

    A conversion's touchpoints are the sessions of the same ``key`` that **start** at most
    ``lookback`` before the conversion and not after it (``t - lookback <= start_time <= t``:
    a session starting exactly ``lookback`` earlier counts, 1 ns earlier does not).

    ``key``: ``"DeviceId"`` (the conversions' column; the sessions table's ``device_id``), any
    column both frames have, or ``"user"``: the sessions of **every device stitched to the
    same e-mail** count (the sessions table's ``user_email``, which
    :func:`psanalytics.sessionize` puts on every session of a device, as ``retention(...,
    key="user")`` and ``within="user"`` use it); a conversion's user is the one of its
    ``DeviceId`` there; devices without an e-mail stay on their own.

    Models: ``"first"`` / ``"last"`` (all credit to the first / last touchpoint),
    ``"linear"`` (equal shares), ``"position"`` (40 % first, 40 % last, 20 % shared by the
    ones between; ``position_weights`` changes the 40/40; one touchpoint takes all, two share
    50/50). ``ignore_direct=True`` drops Direct touchpoints when the conversion has others
    (GA4's "paid and organic last click" treats Direct so). Touchpoints starting at the same
    instant are ordered as in the sessions table.

    Conversions with no touchpoint are credited to ``"(none)"``, never dropped. Revenue is
    summed **per currency**: different currencies are never added together (convert first
    if you need one total).

    Args:
        conversions: one row per conversion with ``DeviceId`` (or ``key``), ``EventTime`` and
            optional ``revenue`` / ``currency`` columns (:func:`orders` makes one from events).
        sessions: the sessions table (:func:`psanalytics.sessionize`'s ``.sessions``), with
            ``channel`` (else :func:`channel` adds it) or the ``by`` column.
        by: the sessions column to credit (``"channel"``, ``"source"``, ``"campaign"``...).

    Returns:
        ``by``, ``currency`` (when given), ``conversions`` (Float64, fractional credit),
        ``revenue`` (Float64, per currency), sorted by conversions descending.
    """
    if model not in MODELS:
        raise JourneyError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    lb = duration(lookback, "lookback")
    t = _touch_inputs(frame(conversions), frame(sessions), by, key, revenue, currency)
    if ignore_direct and by != "channel":
        raise JourneyError("ignore_direct=True needs by='channel'")
    if model in ("last", "first") and not ignore_direct:
        credit = _merged_touch(t.conv, t.sess, model, lb)
        if credit is None:
            credit = _single_touch(t.conv, t.sess, model, lb)
    else:
        credit = _weighted(t.conv, t.sess, model, lb, ignore_direct, position_weights)
    return _credit_table(credit, by, currency if t.has_cur else None, t.has_rev)


@dataclass
class _Touch:
    conv: pl.DataFrame  # _conv (row number), _k, _t, _rev, _cur
    sess: pl.DataFrame  # _k, _st, _by
    has_rev: bool
    has_cur: bool


def _touch_inputs(
    conv: pl.DataFrame,
    sess: pl.DataFrame,
    by: str,
    key: str,
    revenue: str | None,
    currency: str | None,
) -> _Touch:
    if by not in sess.schema:
        if by != "channel":
            raise JourneyError(f"by={by!r} is not a column of the sessions table")
        sess = channel(sess)
    ckey = "DeviceId" if key == "user" else key
    for c in (ckey, "EventTime"):
        if c not in conv.schema:
            raise JourneyError(f"conversions need the {c} column")
    if key == "user":
        skey = "device_id"
        need: tuple[str, ...] = ("device_id", "user_email", "start_time")
    else:
        skey = "device_id" if "device_id" in sess.schema and key == "DeviceId" else key
        need = (skey, "start_time")
    for c in need:
        if c not in sess.schema:
            raise JourneyError(f"sessions need the {c} column")
    has_rev = revenue is not None and revenue in conv.schema
    has_cur = currency is not None and currency in conv.schema
    if has_rev and currency is not None and not has_cur:
        raise JourneyError(
            f"conversions have {revenue!r} but no {currency!r} column: say which currency the "
            "revenue is in (currency=None if it is all one currency)"
        )
    c = conv.select(
        pl.col(ckey).cast(pl.String).alias("_k"),
        pl.col("EventTime").dt.cast_time_unit("ns").alias("_t"),
        (pl.col(revenue).cast(pl.Float64) if has_rev else pl.lit(0.0)).alias("_rev"),
        (pl.col(currency).cast(pl.String) if has_cur else pl.lit(None, pl.String)).alias("_cur"),
    ).with_row_index("_conv")
    s = sess.select(
        pl.col(skey).cast(pl.String).alias("_k"),
        pl.col("start_time").dt.cast_time_unit("ns").alias("_st"),
        pl.col(by).cast(pl.String).alias("_by"),
        *([_user_key()] if key == "user" else []),
    )
    if key == "user":
        c, s = _by_user(c, s)
    return _Touch(c, s, has_rev, has_cur)


def _user_key() -> pl.Expr:
    email = pl.col("user_email").cast(pl.String).str.strip_chars().replace("", None)
    return pl.coalesce(email, pl.lit(DEVICE_PREFIX) + pl.col("device_id").cast(pl.String)).alias(
        "_u"
    )


def _by_user(c: pl.DataFrame, s: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Key both frames by user: a conversion's user is its device's in the sessions table."""
    users = s.select("_k", "_u").unique("_k", keep="first", maintain_order=True)
    c = (
        c.join(users, on="_k", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_u", pl.lit(DEVICE_PREFIX) + pl.col("_k")).alias("_k"))
        .drop("_u")
    )
    return c, s.with_columns(pl.col("_u").alias("_k")).drop("_u")


def _single_touch(c: pl.DataFrame, s: pl.DataFrame, model: str, lb: int) -> pl.DataFrame:
    """First or last touch: one touchpoint per conversion through one as-of join."""
    lb_td = pl.duration(nanoseconds=lb)
    s = s.sort("_st", maintain_order=True)  # ties: the table's order
    if model == "last":
        j = c.sort("_t").join_asof(
            s, left_on="_t", right_on="_st", by="_k", strategy="backward", check_sortedness=False
        )
        ok = pl.col("_st") >= pl.col("_t") - lb_td
    else:
        j = (
            c.sort("_t")
            .with_columns((pl.col("_t") - lb_td).alias("_lo"))
            .join_asof(
                s, left_on="_lo", right_on="_st", by="_k", strategy="forward",
                check_sortedness=False,
            )
        )  # fmt: skip
        ok = pl.col("_st") <= pl.col("_t")
    j = j.with_columns(pl.when(ok).then(pl.col("_by")).alias("_by"))
    return j.select("_conv", "_rev", "_cur", "_by", pl.lit(1.0).alias("_w"))


def _merged_touch(
    c: pl.DataFrame,
    s: pl.DataFrame,
    model: str,
    lb: int,
    hash_: Callable[[pl.Series], np.ndarray] = _hash,
) -> pl.DataFrame | None:
    """First or last touch with numpy: sessions and conversions are one time-ordered stream
    (a session before a conversion at the same instant; sessions in table order at equal
    starts), put in (key hash, stream order) order by one sort of one packed integer; a
    conversion's last touch is the latest session before it in its hash's run (a running
    maximum), its first touch the earliest session after ``t - lookback`` (a running minimum
    from the end).

    Exact without comparing every row's key: a run holds every session of the conversion's
    key (one key, one hash), perhaps with other keys' sessions (their hashes share the high
    bits). When the session found has the conversion's key it is also the nearest among
    that key's sessions; when the nearest session of the run is outside the lookback, so are
    all of that key's. Only the found sessions' keys are compared (one per conversion); a
    found session of another key gives None (``hash_`` exists for the tests, which force
    it). None also for null keys or times, no sessions at all, or a lookback reaching past
    int64's nanoseconds: then the as-of joins of :func:`_single_touch` do it."""
    nulls = ((c, "_k"), (c, "_t"), (s, "_k"), (s, "_st"))
    if s.height == 0 or any(f.get_column(col).null_count() for f, col in nulls):
        return None
    ns, nc = s.height, c.height
    st = s.get_column("_st").to_physical().to_numpy()
    t = c.get_column("_t").to_physical().to_numpy()
    if len(t) and int(t.min()) - lb < -(2**63):  # t - lookback would wrap around in int64
        return None
    probe = t if model == "last" else t - lb
    # merged order: at one instant a session comes first for the last touch (it counts at
    # the conversion's instant), the probe first for the first touch (a session exactly
    # lookback before counts); ties keep the tables' order (stable sort)
    times = np.concatenate([st, probe] if model == "last" else [probe, st])
    order = np.argsort(times, kind="stable")
    if model == "first":
        order = np.where(order < nc, order + ns, order - nc)  # back to sessions-first indices
    n = ns + nc
    sk, ck = s.get_column("_k"), c.get_column("_k")
    h = np.concatenate([hashes(sk, hash_), hashes(ck, hash_)])
    bits = np.uint64(max(n - 1, 1).bit_length())
    rank = np.empty(n, dtype=np.uint64)
    rank[order] = np.arange(n, dtype=np.uint64)
    packed = np.sort((h >> bits << bits) | rank)
    idx = order[(packed & ((np.uint64(1) << bits) - np.uint64(1))).view(np.int64)]
    g = packed >> bits  # the run: the hash's high bits
    pos = np.arange(n)
    if model == "last":
        near = np.maximum.accumulate(np.where(idx < ns, pos, -1))
    else:
        near = np.minimum.accumulate(np.where(idx < ns, pos, n)[::-1])[::-1]
    conv = np.flatnonzero(idx >= ns)
    j = near[conv]
    ok = (j >= 0) & (j < n)
    j = np.clip(j, 0, n - 1)
    ok &= g[j] == g[conv]
    srow = np.where(ok, idx[j], 0)
    crow = idx[conv] - ns
    stj, tc = st[srow], t[crow]
    ok &= (stj >= tc - lb) if model == "last" else (stj <= tc)
    found = np.flatnonzero(ok)
    if not sk.gather(srow[found]).eq_missing(ck.gather(crow[found])).all():
        return None  # a session of another key whose hash shares the high bits
    touch = np.full(nc, -1, dtype=np.int64)  # per conversion: its session's row, or -1
    touch[crow] = np.where(ok, srow, -1)
    by = s.get_column("_by").gather(np.maximum(touch, 0))
    none = np.flatnonzero(touch < 0)
    if len(none):
        by = by.scatter(none, None)
    return c.select("_conv", "_rev", "_cur", by.alias("_by"), pl.lit(1.0).alias("_w"))


def _weighted(
    c: pl.DataFrame,
    s: pl.DataFrame,
    model: str,
    lb: int,
    ignore_direct: bool,
    position_weights: tuple[float, float],
) -> pl.DataFrame:
    """Every touchpoint in the lookback with its share of the conversion."""
    lb_td = pl.duration(nanoseconds=lb)
    j = c.join(s.with_row_index("_srow"), on="_k", how="inner").filter(
        (pl.col("_st") <= pl.col("_t")) & (pl.col("_st") >= pl.col("_t") - lb_td)
    )
    if ignore_direct:
        j = j.filter((pl.col("_by") != "Direct") | (pl.col("_by") == "Direct").all().over("_conv"))
    j = j.sort("_conv", "_st", "_srow").with_columns(
        pl.int_range(pl.len()).over("_conv").alias("_i"), pl.len().over("_conv").alias("_n")
    )
    n, i = pl.col("_n"), pl.col("_i")
    wf, wl = position_weights
    if model == "first":
        w = (i == 0).cast(pl.Float64)
    elif model == "last":
        w = (i == n - 1).cast(pl.Float64)
    elif model == "linear":
        w = 1.0 / n
    else:
        mid = (1.0 - wf - wl) / (n - 2).cast(pl.Float64)
        w = (
            pl.when(n == 1).then(1.0)
            .when(n == 2).then(0.5)
            .when(i == 0).then(wf)
            .when(i == n - 1).then(wl)
            .otherwise(mid)
        )  # fmt: skip
    credit = j.select("_conv", "_rev", "_cur", "_by", w.alias("_w")).filter(pl.col("_w") > 0)
    unmatched = c.join(credit.select("_conv").unique(), on="_conv", how="anti").select(
        "_conv", "_rev", "_cur", pl.lit(None, pl.String).alias("_by"), pl.lit(1.0).alias("_w")
    )
    return pl.concat([credit, unmatched])


def _credit_table(
    credit: pl.DataFrame, by: str, currency: str | None, has_rev: bool
) -> pl.DataFrame:
    g = [pl.col("_by").fill_null("(none)").alias(by)]
    if currency is not None:
        g.append(pl.col("_cur").alias(currency))
    out = credit.group_by(g).agg(
        pl.col("_w").sum().alias("conversions"),
        (pl.col("_w") * pl.col("_rev")).sum().alias("revenue"),
    )
    if not has_rev:
        out = out.drop("revenue")
    keys = [by] + ([currency] if currency is not None else [])
    return out.sort(
        ["conversions", *keys], descending=[True] + [False] * len(keys), nulls_last=True
    )
