"""``summarize``: the by-keys, the aggregate list (``arg_max``/``arg_min`` with their
extra columns, ``percentiles`` sorted once), and JSON paths inside aggregates read before
the group_by into hidden columns of the input (once per distinct document, see
``ExprCompiler.json_path``). A mixin of :class:`~psanalytics.query.kql.compiler.Compiler`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.functions import AGGREGATES
from psanalytics.query.kql.functions.aggregates import percentile_columns
from psanalytics.query.kql.naming import aggregate_name, column_name, percentile_name
from psanalytics.query.kql.types import ORDERED, Table, Val

if TYPE_CHECKING:  # pragma: no cover
    from psanalytics.query.kql.compiler import Compiler


class SummarizeOps:
    def op_summarize(self: Compiler, op: N.Summarize, t: Table) -> Table:
        keys: list[pl.Expr] = []
        schema: dict[str, str] = {}
        used: list[str] = []

        def unique(name: str) -> str:
            base, k = name, 0
            while name in used:
                k += 1
                name = f"{base}{k}"
            used.append(name)
            return name

        n_auto = 0
        for it in op.by:
            v = self.scalar(it.expr, t)
            if v.is_list:
                raise self.sem("cannot group by a dynamic array", it.expr)
            name = it.name
            if name is None:
                e = it.expr
                if isinstance(e, N.Call) and e.name in ("bin", "floor", "bin_at") and e.args:
                    name = column_name(e.args[0])
                else:
                    name = column_name(e)
                if name is None:
                    n_auto += 1
                    name = f"Column{n_auto}"
            elif name in used:
                raise self.sem(f"'summarize' names the column '{name}' twice", it)
            name = unique(name)
            keys.append(self.materialize(v).alias(name))
            schema[name] = v.ktype
        aggs: list[pl.Expr] = []
        post: list[pl.Expr] = []  # read from aggregated columns after the agg
        key_names = list(used)
        outer_pre, outer_prefix = self.pre_agg, self.pre_agg_prefix
        self.pre_agg, prefix = [], "__json_"
        while any(c.startswith(prefix) for c in t.schema):
            prefix = "_" + prefix
        self.pre_agg_prefix = prefix
        try:
            with self.within(pre_agg=True):
                self._summarize_aggs(op, t, aggs, post, schema, unique, used, key_names,
                                     bool(keys), n_auto)
            pre = self.pre_agg
        finally:
            self.pre_agg, self.pre_agg_prefix = outer_pre, outer_prefix
        src = t.lf.with_columns(pre) if pre else t.lf
        if keys:
            lf = src.group_by(keys, maintain_order=self.scope.order_matters).agg(aggs)
        else:
            lf = src.select(aggs)
        if post:
            lf = lf.with_columns(post).select(list(schema))
        return Table(lf, schema, {}, False)

    def _summarize_aggs(self: Compiler, op: N.Summarize, t: Table, aggs: list[pl.Expr],
                        post: list[pl.Expr], schema: dict[str, str],
                        unique: Callable[[str], str], used: list[str],
                        key_names: list[str], grouped: bool, n_auto: int) -> None:
        """summarize's aggregate list into ``aggs`` (and ``post``: columns read after the
        group_by), with their names and types in ``schema``."""
        for it in op.aggs:
            e = it.expr
            if isinstance(e, N.Call) and e.name in ("arg_max", "arg_min"):
                for name, ex, kt in self.agg_arg(e, t, key_names, it.name, grouped):
                    name = unique(name)
                    aggs.append(ex.alias(name))
                    schema[name] = kt
                continue
            if isinstance(e, N.Call) and e.name == "percentiles":
                # one sort per group: a list column read once per percentage after the agg
                src, kt, cols = self.agg_percentiles(e, t, it, grouped)
                tmp = unique(f"__percentiles_{len(aggs)}")
                aggs.append((src if grouped else src.implode()).alias(tmp))
                for name, read in cols:
                    name = unique(name)
                    post.append(read(pl.col(tmp)).alias(name))
                    schema[name] = kt
                continue
            v = self.scalar(e, t, agg_ctx=True, grouped=grouped)
            if not v.agg and not v.is_const:
                raise self.sem("'summarize' needs an aggregate such as count(), sum(x) or "
                               "dcount(x) here", e)
            if it.name is not None:
                if it.name in used:
                    raise self.sem(f"'summarize' names the column '{it.name}' twice", it)
                name = it.name
            elif isinstance(e, N.Call) and e.name in AGGREGATES:
                name = aggregate_name(e) or "Column1"
            else:
                n_auto += 1
                name = f"Column{n_auto}"
            name = unique(name)
            aggs.append(v.expr.alias(name))
            schema[name] = v.ktype

    def agg_percentiles(self: Compiler, e: N.Call, t: Table, it: N.Assign, grouped: bool
                        ) -> tuple[pl.Expr, str, list[tuple[str, Callable[..., pl.Expr]]]]:
        """``percentiles(x, 5, 50)``: the sorted values (an aggregate) and one named
        reader per percentage, ``percentile_x_5``..."""
        with self.within(agg=True, grouped=grouped, in_agg=True):
            src, kt, cols = percentile_columns(self, e, t)
        if it.name is not None and len(cols) != 1:
            raise self.sem("percentiles() returns one column per percentage: leave it "
                           "unnamed, or use percentiles_array() for one named column", it)
        return src, kt, [(it.name or percentile_name(e.args[0], p), r) for p, r in cols]

    def agg_arg(self: Compiler, e: N.Call, t: Table, keys: list[str], alias: str | None,
                grouped: bool) -> list[tuple[str, pl.Expr, str]]:
        if len(e.args) < 1:
            raise self.sem(f"'{e.name}' needs an expression to maximise/minimise", e)
        target = self.scalar(e.args[0], t)
        if target.ktype not in ORDERED + ("string",):
            raise self.sem(f"'{e.name}' cannot order by a {target.ktype} value", e.args[0])
        by = self.materialize(target)
        fn = "max_by" if e.name == "arg_max" else "min_by"
        tname = alias or column_name(e.args[0]) or (
            "max_" if e.name == "arg_max" else "min_")
        out = [(tname, getattr(by, "max" if e.name == "arg_max" else "min")(), target.ktype)]
        rest = e.args[1:]
        names: list[tuple[str, Val]] = []
        for a in rest:
            if isinstance(a, N.Star):
                for c, kt in t.schema.items():
                    if c not in keys and c != tname and c not in [n for n, _ in names]:
                        names.append((c, Val(pl.col(c), kt)))
            else:
                v = self.scalar(a, t)
                n = column_name(a)
                if n is None:
                    raise self.sem(f"'{e.name}' returns columns: name this expression", a,
                                   cls=KqlUnsupported)
                names.append((n, v))
        # a group whose value is null on every row still returns one of its rows
        all_null = by.max().is_null()
        for n, v in names:
            col = self.materialize(v)
            out.append((n, pl.when(all_null).then(col.first())
                        .otherwise(getattr(col, fn)(by)), v.ktype))
        return out
