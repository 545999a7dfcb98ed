"""``mv-apply``: a subquery run on each input row's expansion, compiled to one vectorised
plan (no Python loop over rows).

The input rows are numbered (a hidden key column); ``mv-expand`` expands them; the
subquery's operators then run on the whole expansion at once, each one either row-local
(``where``, ``extend``, ``parse``, ``mv-expand``: the key rides along) or rewritten to act
per key (``take`` and ``top`` keep the first rows of each key, ``sort`` sorts within each
key, ``summarize``/``count``/``distinct`` group by the key too). The result is joined back
to the input row's other columns, in input order.

Columns: the input's columns (an expanded column named like its source takes the
element's value), then the subquery's new columns, as the Kusto reference's examples
print them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.types import Table

if TYPE_CHECKING:  # pragma: no cover
    from psanalytics.query.kql.compiler import Compiler

#: subquery operators that keep every column and act on each row alone
_ROW_LOCAL = (N.Where, N.Extend, N.Parse, N.MvExpand, N.MvApply, N.ProjectRename,
              N.ProjectReorder)


class ApplyOps:
    def op_mvapply(self: Compiler, op: N.MvApply, t: Table) -> Table:
        key = "__mvapply_row"
        while key in t.schema:
            key += "_"
        base = Table(t.lf.with_row_index(key).with_columns(pl.col(key).cast(pl.Int64)),
                     {key: "long", **t.schema}, dict(t.dtypes), t.ordered)
        cur = self.op_mvexpand(N.MvExpand(op.items, None, op.itemindex, op.limit,
                                          span=op.span), base)
        keys = base.lf.select(key)
        for sub in op.ops:
            cur = self._per_row(sub, cur, key, keys)
        out_cols = [c for c in cur.schema if c != key]
        rest = [c for c in t.schema if c not in cur.schema]
        lf = cur.lf.sort(key, maintain_order=True)
        if rest:
            lf = lf.join(base.lf.select([key, *rest]), on=key, how="left",
                         maintain_order="left")
        order = [*t.schema, *[c for c in out_cols if c not in t.schema]]
        schema = {c: cur.schema.get(c) or t.schema[c] for c in order}
        dtypes = {c: (cur.dtypes if c in cur.schema else t.dtypes)[c] for c in order
                  if c in (cur.dtypes if c in cur.schema else t.dtypes)}
        return Table(lf.select(order), schema, dtypes, t.ordered)

    def _per_row(self: Compiler, op: N.Op, t: Table, key: str, keys: pl.LazyFrame
                 ) -> Table:
        """One subquery operator over every row's expansion at once (``key`` = the row;
        ``keys`` = every input row's key)."""
        k = N.Name(key, span=op.span)
        by_key = N.Assign(None, k, span=op.span)
        if isinstance(op, _ROW_LOCAL):
            out = getattr(self, "op_" + type(op).__name__.lower())(op, t)
        elif isinstance(op, N.Project):
            out = self.op_project(N.Project([*op.items, by_key], span=op.span), t)
        elif isinstance(op, N.ProjectAway):
            if op.keep:
                out = self.op_projectaway(N.ProjectAway([*op.names, k], keep=True,
                                                        span=op.span), t)
            else:
                out = self.op_projectaway(op, Table(t.lf, {c: v for c, v in t.schema.items()
                                                           if c != key}, t.dtypes, t.ordered))
                out = Table(pl.concat([t.lf.select(key), out.lf], how="horizontal"),
                            {key: "long", **out.schema}, out.dtypes, out.ordered)
        elif isinstance(op, N.Take):
            n = self.const_count(op.count, t, op.keyword)
            out = Table(t.lf.filter(pl.int_range(pl.len()).over(key) < n), t.schema,
                        t.dtypes, t.ordered)
        elif isinstance(op, (N.Sort, N.Top)):
            keys = op.keys if isinstance(op, N.Sort) else [op.key]
            exprs, desc, nl = self.sort_parts([N.SortKey(k, True, None, span=op.span),
                                               *keys], t)
            lf = t.lf.sort(exprs, descending=desc, nulls_last=nl, maintain_order=True)
            if isinstance(op, N.Top):
                n = self.const_count(op.count, t, "top")
                lf = lf.filter(pl.int_range(pl.len()).over(key) < n)
            out = Table(lf, t.schema, t.dtypes, True)
        elif isinstance(op, (N.Summarize, N.Count)):
            if isinstance(op, N.Count):
                cnt = N.Assign("Count", N.Call("count", [], span=op.span), span=op.span)
                op = N.Summarize([cnt], [], span=op.span)
            out = self.op_summarize(N.Summarize(op.aggs, [by_key, *op.by], span=op.span), t)
            if not op.by:
                # summarize without 'by' gives one row for every subtable, an empty one too
                # (count() = 0, make_list() = []): the row it gives an empty input
                empty = self.op_summarize(op, Table(t.lf.clear(), t.schema, t.dtypes))
                missing = keys.join(out.lf.select(key), on=key, how="anti")
                lf = pl.concat([out.lf, missing.join(empty.lf, how="cross")],
                               how="vertical_relaxed")
                out = Table(lf, out.schema, out.dtypes, out.ordered)
        elif isinstance(op, N.Distinct):
            out = self.op_distinct(op if op.items is None else
                                   N.Distinct([k, *op.items], span=op.span), t)
        else:
            text = (self.text or "")[op.span[0]:op.span[1]].split()
            name = text[0] if text else type(op).__name__.lower()
            raise self.sem(f"'{name}' inside mv-apply is not supported by the local "
                           "engine (supported: where, extend, project*, parse, mv-expand, "
                           "take, top, sort, summarize, count, distinct)", op,
                           cls=KqlUnsupported)
        if key not in out.schema:  # pragma: no cover - every branch keeps the key
            raise self.sem("mv-apply lost track of its rows (please report it)", op)
        return out
