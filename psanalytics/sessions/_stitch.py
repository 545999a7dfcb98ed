"""Stitching: each device's latest non-empty ``User.Email``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from psanalytics.sessions._rules import _check_columns, _collect, _key_series


def _stitched(
    df: pl.DataFrame, time_col: str, ev_key: np.ndarray, dev_ord: np.ndarray
) -> list[pl.Series]:
    """``user_email``, ``user_name``, ``n_user_emails`` per session (output order), with the
    rules of :func:`stitch`, computed on the few rows that carry an e-mail, keyed by the
    device ordinal of each row's session (no string join)."""
    ns = dev_ord.size
    user = df.get_column("User")
    email = user.struct.field("Email")
    rows = (email.str.len_bytes() > 0).fill_null(False).arg_true()
    n_dev = int(dev_ord.max()) + 1 if ns else 0
    if rows.len() == 0 or ns == 0:
        return [
            pl.repeat(None, ns, dtype=pl.String, eager=True).alias("user_email"),
            pl.repeat(None, ns, dtype=pl.String, eager=True).alias("user_name"),
            pl.Series("n_user_emails", np.zeros(ns, np.uint8)),
        ]
    r = rows.to_numpy()
    sub = (
        pl.DataFrame(
            {
                "dev": dev_ord[ev_key[r]],
                "row": r,
                "t": df.get_column(time_col).gather(rows),
                "email": email.gather(rows).str.strip_chars().str.to_lowercase(),
                "name": user.struct.field("Name").gather(rows),
            }
        )
        .filter(pl.col("email") != "")
        .sort(["t", "row"])
        .group_by("dev")
        .agg(
            pl.col("email").last(),
            pl.col("name").last().fill_null("").str.strip_chars().replace("", None),
            pl.col("email").n_unique().alias("n"),
        )
    )
    dev_idx = sub.get_column("dev").cast(pl.UInt32)
    per_dev_email = pl.repeat(None, n_dev, dtype=pl.String, eager=True).scatter(
        dev_idx, sub.get_column("email")
    )
    per_dev_name = pl.repeat(None, n_dev, dtype=pl.String, eager=True).scatter(
        dev_idx, sub.get_column("name")
    )
    per_dev_n = np.zeros(n_dev, dtype=np.uint8)
    per_dev_n[dev_idx.to_numpy()] = np.minimum(sub.get_column("n").to_numpy(), 255)
    take = pl.Series(dev_ord.astype(np.uint32))
    return [
        per_dev_email.gather(take).alias("user_email"),
        per_dev_name.gather(take).alias("user_name"),
        pl.Series("n_user_emails", per_dev_n[dev_ord]),
    ]


def stitch(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    key: str | Sequence[str] = "DeviceId",
    time_col: str = "EventTime",
    _keyser: pl.Series | None = None,
) -> pl.DataFrame:
    """Map each device to a user: the device's most recent non-empty ``User.Email``.

    E-mails are trimmed and lower-cased. Ties in time are decided by input order (the later
    row wins). Only devices with at least one e-mail appear.

    Returns:
        A frame with ``device_id``, ``user_email`` (latest), ``user_name`` (the ``User.Name``
        on that latest event, or null when empty), ``n_emails`` (distinct e-mails, UInt32),
        ``first_identified_at``, ``last_identified_at`` and ``is_shared`` (``n_emails > 1``),
        sorted by ``device_id``.
    """
    df = _collect(events)
    _check_columns(df, ["User", time_col], "stitch")
    keys, keyser = (None, _keyser) if _keyser is not None else _key_series(df, key)
    frame = pl.DataFrame(
        {
            "device_id": keyser.cast(pl.String),
            "t": df.get_column(time_col),
            "email": df.get_column("User").struct.field("Email"),
            "name": df.get_column("User").struct.field("Name"),
        }
    )
    return (
        frame.with_row_index("_row")
        .filter(pl.col("email").str.len_bytes() > 0)  # cheap pre-filter: most events are anonymous
        .with_columns(pl.col("email").str.strip_chars().str.to_lowercase())
        .filter(pl.col("email") != "")
        .sort(["t", "_row"])
        .group_by("device_id")
        .agg(
            pl.col("email").last().alias("user_email"),
            pl.col("name")
            .last()
            .fill_null("")
            .str.strip_chars()
            .replace("", None)
            .alias("user_name"),
            pl.col("email").n_unique().cast(pl.UInt32).alias("n_emails"),
            pl.col("t").min().alias("first_identified_at"),
            pl.col("t").max().alias("last_identified_at"),
        )
        .with_columns((pl.col("n_emails") > 1).alias("is_shared"))
        .sort("device_id")
    )
