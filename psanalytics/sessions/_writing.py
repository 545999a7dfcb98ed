"""Writing the bounded path's outputs: one Parquet (or CSV) file appended slice by slice,
written to ``<name>.partial`` and renamed when complete (a failed run leaves no output)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import polars as pl

from psanalytics.sessions._rules import SessionizeError

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def csv_ready(frame: FrameT) -> FrameT:
    """Struct columns as JSON text and list columns joined by ``|``: what CSV can hold."""
    schema = frame.collect_schema()
    nested = [c for c, t in schema.items() if isinstance(t, pl.Struct | pl.List)]
    return frame.with_columns(
        pl.col(c).struct.json_encode()
        if isinstance(schema[c], pl.Struct)
        else pl.col(c).cast(pl.List(pl.String)).list.join("|")
        for c in nested
    )


def check_out_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".parquet", ".csv"):
        raise SessionizeError(f"{p}: write .parquet or .csv (got {p.suffix or 'no suffix'!r})")
    return p


class Writer:
    """Appends frames to one Parquet (pyarrow writer, Polars dtypes kept) or CSV file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")
        self.csv = path.suffix.lower() == ".csv"
        self._pq = None
        self._fh = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if self.csv:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
            csv_ready(frame).write_csv(self._fh, include_header=self.rows == 0)
        else:
            import pyarrow.parquet as pq

            table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())  # pyarrow writes these
            if self._pq is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._pq = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            self._pq.write_table(table, row_group_size=256 * 1024)
        self.rows += frame.height

    def close(self, empty: pl.DataFrame) -> None:
        if self.rows == 0:
            self.write(empty)
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for h in (self._pq, self._fh):
            if h is not None:
                h.close()
        self.tmp.unlink(missing_ok=True)


def write_direct(frame: pl.DataFrame, path: Path) -> None:
    w = Writer(path)
    try:
        w.write(frame)
        w.close(frame)
    except BaseException:
        w.abort()
        raise
