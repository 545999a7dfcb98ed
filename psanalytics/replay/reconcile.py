"""Reconciliation after a move to ODP: source vs destination per day x event type.

Built from what the replayer recorded (which rows of the encoded events each resolved
batch carried, and how it ended) and, when given, what the destination holds (its
events' ``idempotence_id``). A team shows this table before switching Profile Store off:
every row should have ``difference`` 0.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from psanalytics.errors import ArgumentError

__all__ = ["COLUMNS", "differences", "reconcile", "summary"]

COLUMNS = ["day", "event_type", "read", "mapped", "skipped_by_map", "sent", "rejected", "failed",
           "quarantined", "pending", "accepted", "duplicates", "difference"]

_SENT = {"sent", "resumed-ok"}
_REJECTED = {"rejected", "resumed-rejected"}


def _destination_ids(destination: Any) -> tuple[pl.DataFrame, dict[str, int] | None]:
    """(frame with ``idempotence_id``, duplicates per id or None when unknown)."""
    emu = getattr(destination, "emulator", destination)  # a serve() Server, or an Emulator
    odp = getattr(emu, "odp", None)
    if odp is not None and hasattr(odp, "events_frame"):
        frame = odp.events_frame().select("idempotence_id")
        dups = odp.duplicates() if hasattr(odp, "duplicates") else None
        return frame, dups
    if isinstance(destination, pl.LazyFrame):
        destination = destination.collect()
    if isinstance(destination, pl.DataFrame):
        if "idempotence_id" in destination.columns:
            return destination.select(pl.col("idempotence_id").cast(pl.String)), None
        if "data" in destination.columns:  # ODP events with data as JSON text or struct
            col = destination.get_column("data")
            if col.dtype == pl.String:
                ids = [(orjson.loads(t) or {}).get("idempotence_id") if t else None for t in col]
                return pl.DataFrame({"idempotence_id": ids}, schema={"idempotence_id": pl.String}), None
            return destination.select(pl.col("data").struct.field("idempotence_id").cast(pl.String)), None
    raise ArgumentError("destination must be an Emulator, a serve() server, or a frame with an "
                    "idempotence_id (or data) column")


def reconcile(report: Any, destination: Any = None) -> pl.DataFrame:
    """See :meth:`psanalytics.replay.ReplayReport.reconcile`."""
    source: pl.DataFrame | None = report._source
    if source is None:
        raise ArgumentError("reconcile() needs a report of an ODP replay run (Replayer.run with to='odp')")
    nrows = int(source.get_column("row").max() or -1) + 1 if source.height else 0
    status = ["pending"] * nrows
    for lo, hi, st in report._outcomes:
        status[lo:hi] = [st] * (hi - lo)
    stat = pl.DataFrame({"row": pl.int_range(nrows, eager=True, dtype=pl.UInt32), "status": status},
                        schema={"row": pl.UInt32, "status": pl.String})
    quarantined = list(getattr(report, "_q_offsets", []) or [])
    f = source.join(stat, on="row", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("row").is_null()).then(pl.lit("skipped_by_map"))
        .when(pl.col("offset").is_in(quarantined)).then(pl.lit("quarantined"))
        .otherwise(pl.col("status")).alias("status")
    )
    if destination is not None:
        dest, dups = _destination_ids(destination)
        found = set(dest.get_column("idempotence_id").drop_nulls().to_list())
        f = f.with_columns(pl.col("idempotence_id").is_in(list(found)).alias("_found"))
        if dups is not None:
            f = f.with_columns(pl.col("idempotence_id").replace_strict(dups, default=0,
                                                                       return_dtype=pl.Int64).alias("_dups"))
        else:
            f = f.with_columns(pl.lit(None, pl.Int64).alias("_dups"))
    else:
        f = f.with_columns(pl.col("status").is_in(list(_SENT)).alias("_found"),
                           pl.lit(None, pl.Int64).alias("_dups"))
    st = pl.col("status")
    out = f.group_by("day", "event_type").agg(
        pl.len().cast(pl.Int64).alias("read"),
        (st != "skipped_by_map").sum().cast(pl.Int64).alias("mapped"),
        (st == "skipped_by_map").sum().cast(pl.Int64).alias("skipped_by_map"),
        st.is_in(list(_SENT)).sum().cast(pl.Int64).alias("sent"),
        st.is_in(list(_REJECTED)).sum().cast(pl.Int64).alias("rejected"),
        (st == "failed").sum().cast(pl.Int64).alias("failed"),
        (st == "quarantined").sum().cast(pl.Int64).alias("quarantined"),
        (st == "pending").sum().cast(pl.Int64).alias("pending"),
        (pl.col("_found") & (st != "skipped_by_map")).sum().cast(pl.Int64).alias("accepted"),
        pl.col("_dups").sum().cast(pl.Int64).alias("duplicates") if destination is not None
        else pl.lit(None, pl.Int64).alias("duplicates"),
    )
    out = out.with_columns((pl.col("mapped") - pl.col("accepted")).alias("difference"))
    return out.sort("day", "event_type").select(COLUMNS)


def differences(table: pl.DataFrame) -> pl.DataFrame:
    """The rows of a reconciliation table whose ``difference`` is not 0."""
    return table.filter(pl.col("difference") != 0)


def summary(table: pl.DataFrame) -> str:
    """A short text: totals, and each day x type that differs (the CLI prints this)."""
    t = table.select([pl.col(c).sum() for c in COLUMNS[2:] if c != "duplicates"]
                     + [pl.col("duplicates").sum()]).row(0, named=True)
    lines = [
        f"reconcile: {table.get_column('day').n_unique():,} days x "
        f"{table.get_column('event_type').n_unique():,} event types: read {t['read']:,}, mapped {t['mapped']:,}"
        f" (skipped by map {t['skipped_by_map']:,}), sent {t['sent']:,}, accepted {t['accepted']:,}, "
        f"rejected {t['rejected']:,}, failed {t['failed']:,}, pending {t['pending']:,}"
        + (f", duplicates {t['duplicates']:,}" if t["duplicates"] is not None and table["duplicates"].null_count() == 0 else ""),
    ]
    diff = differences(table)
    if diff.height == 0:
        lines.append("  no differences")
    else:
        lines.append(f"  {diff.height:,} day x type rows differ:")
        for r in diff.head(20).iter_rows(named=True):
            why = ", ".join(f"{k} {r[k]:,}" for k in ("rejected", "failed", "quarantined", "pending") if r[k])
            lines.append(f"    {r['day']} {r['event_type']}: mapped {r['mapped']:,}, accepted {r['accepted']:,}"
                         + (f" ({why})" if why else ""))
        if diff.height > 20:
            lines.append(f"    ... {diff.height - 20:,} more")
    return "\n".join(lines)
