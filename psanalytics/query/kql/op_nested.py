"""``top-nested``: hierarchical aggregation, one vectorised group-by per level.

Level *i* groups the rows that fall under a row kept at level *i-1* by the values of
levels 1..i, aggregates, keeps the top *N* of each parent (by the aggregate, ``desc``
unless ``asc``; every value when *N* is omitted) and, with ``with others = v``, adds one
row per parent whose value is ``v`` and whose aggregate is computed over every record
that did not make the top (its deeper levels are null: the others are not refined).

Columns, as Kusto names them: for each level the value column (the ``Name =`` given, the
column's own name, or ``Column<i>``) and its aggregate (the ``Name =`` given or
``aggregated_<value column>``). Rows come sorted level by level (the kept values by their
aggregate, each parent's ``others`` row last).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.types import _DTYPES, Table

if TYPE_CHECKING:  # pragma: no cover
    from psanalytics.query.kql.compiler import Compiler


class NestedOps:
    def op_topnested(self: Compiler, op: N.TopNested, t: Table) -> Table:
        from psanalytics.query.kql.naming import column_name

        names: list[str] = []
        anames: list[str] = []
        for i, (_, name, e, _, aname, _, _) in enumerate(op.levels, start=1):
            nm = name or column_name(e) or f"Column{i}"
            an = aname or f"aggregated_{nm}"
            for n in (nm, an):
                if n in names or n in anames:
                    raise self.sem(f"'top-nested' names the column '{n}' twice", op)
            names.append(nm)
            anames.append(an)
        # the value of every level, computed once (aggregates still read the input columns)
        tmp = [f"__tn{i}" for i in range(len(names))]
        base = self.op_extend(N.Extend([N.Assign(tn, lv[2], span=op.span)
                                        for tn, lv in zip(tmp, op.levels, strict=True)],
                                       span=op.span), t)
        parents: pl.LazyFrame | None = None  # kept rows of the level above
        done: list[pl.LazyFrame] = []  # others rows (finished, deeper levels null)
        schema: dict[str, str] = {}
        for i, (count, _, _e, others, _, agg, asc) in enumerate(op.levels):
            keys, up = tmp[:i + 1], tmp[:i]
            rows = base if parents is None else Table(
                base.lf.join(parents.select(up), on=up, how="semi", nulls_equal=True,
                             maintain_order="left"),
                base.schema, base.dtypes, base.ordered)
            # groups in first-appearance order: ties for the top N go to the value seen
            # first, the same on every run (an unordered group_by broke them at random)
            with self.within(order_matters=True):
                summ = self.op_summarize(N.Summarize(
                    [N.Assign(anames[i], agg, span=op.span)],
                    [N.Assign(None, N.Name(k, span=op.span), span=op.span) for k in keys],
                    span=op.span), rows)
            schema[names[i]] = base.schema[tmp[i]]
            schema[anames[i]] = summ.schema[anames[i]]
            g = summ.lf.sort(anames[i], descending=not asc, nulls_last=True,
                             maintain_order=True)
            if count is not None:
                n = self.const_count(count, t, "top-nested")
                rank = pl.int_range(pl.len())
                g = g.filter((rank.over(up) if up else rank) < n)
            if others is not None and count is not None:
                ov = self.const_val(others, "the 'with others' value")
                kt = base.schema[tmp[i]]
                if ov.ktype != kt and ov.const is not None:
                    raise self.sem(f"the 'with others' value is {ov.ktype} but the "
                                   f"top-nested value is {kt}", others)
                rest = rows.lf.join(g.select(keys), on=keys, how="anti", nulls_equal=True)
                rest = rest.with_columns(ov.expr.cast(_DTYPES[kt]).alias(tmp[i]))
                osumm = self.op_summarize(N.Summarize(
                    [N.Assign(anames[i], agg, span=op.span)],
                    [N.Assign(None, N.Name(k, span=op.span), span=op.span) for k in keys],
                    span=op.span), Table(rest, base.schema, base.dtypes)).lf
                if parents is not None:
                    osumm = osumm.join(parents, on=up, how="left", nulls_equal=True)
                done.append(osumm.with_columns(pl.lit(True).alias(f"__tno{i}")))
            if parents is not None:
                g = g.join(parents, on=up, how="left", nulls_equal=True,
                           maintain_order="left")
            parents = g.with_columns(pl.lit(False).alias(f"__tno{i}"))
        assert parents is not None
        flags = [f"__tno{i}" for i in range(len(names))]
        cols = [c for i in range(len(names)) for c in (tmp[i], anames[i])]
        out = pl.concat([parents, *done], how="diagonal_relaxed")
        by, desc = [], []
        for i, lv in enumerate(op.levels):
            by += [pl.col(flags[i]).fill_null(True), pl.col(anames[i]), pl.col(tmp[i])]
            desc += [False, not lv[6], False]
        out = out.sort(by, descending=desc, nulls_last=True, maintain_order=True)
        out = out.select(cols).rename(dict(zip(tmp, names, strict=True)))
        return Table(out, {c: schema[c] for c in [x for i in range(len(names))
                                                   for x in (names[i], anames[i])]}, {}, True)
