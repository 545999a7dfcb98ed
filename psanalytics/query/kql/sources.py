"""Table sources (print, datatable, range, union as a source, materialize, calls of let
functions and views), let functions (binding, inlining) and toscalar. A mixin of
:class:`~psanalytics.query.kql.compiler.Compiler`, through
:class:`~psanalytics.query.kql.operators.TabularOps`."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported, suggest
from psanalytics.query.kql.types import _DTYPES, NUMERIC, Table, Val, _lit, _ns

if TYPE_CHECKING:  # pragma: no cover
    from psanalytics.query.kql.compiler import Compiler

_EMPTY = Table(pl.LazyFrame(), {}, {})


def _frame_table(lf: pl.LazyFrame, schema: dict[str, str], ordered: bool = True) -> Table:
    return Table(lf, schema, {}, ordered)


def _py_to_const(value: Any, ktype: str) -> Any:
    """A Python value collected from a frame -> the literal value of its KQL type."""
    if value is None:
        return None
    if ktype == "datetime" and isinstance(value, datetime):
        return _ns(value)
    if ktype == "timespan" and isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 10**9 + value.microseconds * 1000
    if ktype == "dynamic" and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(value, pl.Series):
        return value.to_list()
    return value


class SourceOps:
    # ------------------------------------------------------------------ sources
    def source(self: Compiler, src: Any) -> Table:
        if isinstance(src, N.TableRef):
            return self.table_ref(src)
        if isinstance(src, N.PrintSource):
            return self.src_print(src)
        if isinstance(src, N.DatatableSource):
            return self.src_datatable(src)
        if isinstance(src, N.RangeSource):
            return self.src_range(src)
        if isinstance(src, N.SearchSource):
            return self.src_search(src)
        if isinstance(src, N.UnionSource):
            return self.op_union(src.union, None)
        if isinstance(src, N.CallSource):
            if src.name == "materialize":
                if len(src.args) != 1 or not isinstance(src.args[0], N.Pipeline):
                    raise self.sem("materialize() takes one tabular expression", src)
                t, _ = self.compile_pipeline(src.args[0])
                return Table(t.lf.cache(), t.schema, t.dtypes, t.ordered)
            if src.name in self.funcs:
                return self.invoke_tabular(self.funcs[src.name], src.args, src)
            cands = [*self.funcs, *self.tables, *self.tabular_lets]
            raise self.sem(f"unknown tabular function '{src.name}'", src,
                           suggestion=suggest(src.name, cands))
        raise self.sem(f"unsupported table source {type(src).__name__}", src,
                       cls=KqlUnsupported)

    def const_val(self: Compiler, e: N.Expr, what: str) -> Val:
        v = self.scalar(e, _EMPTY)
        if not v.is_const:
            # no column in scope: evaluate it once (startofmonth(now()), a let, ...)
            try:
                value = pl.select(v.expr.alias("v")).item(0, 0)
            except pl.exceptions.PolarsError:
                raise self.sem(f"{what} must be a constant", e) from None
            return _lit(_py_to_const(value, v.ktype), v.ktype) if v.ktype != "dynamic" \
                else v
        return v

    def src_print(self: Compiler, src: N.PrintSource) -> Table:
        from psanalytics.query.kql.naming import column_name
        exprs, schema = [], {}
        k = 0
        for it in src.items:
            v = self.scalar(it.expr, _EMPTY)
            name = it.name
            if name is None:
                name = column_name(it.expr) if not isinstance(it.expr, N.Name) else None
                if name is None:
                    name = f"print_{k}"
                    k += 1
            if name in schema:
                raise self.sem(f"'print' names the column '{name}' twice", it)
            exprs.append(self.materialize(v).alias(name))
            schema[name] = v.ktype
        lf = pl.LazyFrame({"__print": [0]}).with_columns(exprs).select(list(schema))
        return _frame_table(lf, schema)

    def src_datatable(self: Compiler, src: N.DatatableSource) -> Table:
        width = len(src.columns)
        if len(src.values) % width:
            raise self.sem(f"datatable has {len(src.values)} values, not a multiple of its "
                           f"{width} columns", src)
        cols: dict[str, list[Any]] = {n: [] for n, _ in src.columns}
        names = [n for n, _ in src.columns]
        if len(set(names)) != len(names):
            raise self.sem("datatable names a column twice", src)
        for i, e in enumerate(src.values):
            name, kt = src.columns[i % width]
            v = self.const_val(e, "a datatable value")
            cols[name].append(self._coerce_const(v, kt, e))
        data = {}
        schema = {}
        for name, kt in src.columns:
            kq = {"decimal": "real", "guid": "string"}.get(kt, kt)
            vals = cols[name]
            if kq == "dynamic":
                vals = [None if x is None else orjson.dumps(x).decode() for x in vals]
                s = pl.Series(name, vals, dtype=pl.String)
            elif kq in ("datetime", "timespan"):
                s = pl.Series(name, vals, dtype=pl.Int64).cast(_DTYPES[kq])
            else:
                s = pl.Series(name, vals, dtype=_DTYPES[kq])
            if kq == "string":
                s = s.fill_null("")
            data[name] = s
            schema[name] = kq
        return _frame_table(pl.DataFrame(data).lazy(), schema)

    def _coerce_const(self: Compiler, v: Val, kt: str, node: N.Expr) -> Any:
        x = v.const
        if x is None:
            return "" if kt in ("string", "guid") else None
        if kt == "dynamic":
            return x
        if kt in ("string", "guid"):
            if v.ktype != "string":
                raise self.sem(f"expected a string value, got {v.ktype}", node)
            return x
        if kt in ("long",):
            if v.ktype == "long" or (v.ktype == "real" and float(x).is_integer()):
                return int(x)
            raise self.sem(f"expected a long value, got {v.ktype}", node)
        if kt in ("real", "decimal"):
            if v.ktype in NUMERIC:
                return float(x)
            raise self.sem(f"expected a real value, got {v.ktype}", node)
        if kt == "bool":
            if v.ktype == "bool":
                return x
            raise self.sem(f"expected a bool value, got {v.ktype}", node)
        if kt in ("datetime", "timespan"):
            if v.ktype == kt:
                return x
            raise self.sem(f"expected a {kt} value, got {v.ktype}", node)
        raise self.sem(f"datatable column type {kt} is not supported locally", node,
                       cls=KqlUnsupported)

    def src_range(self: Compiler, src: N.RangeSource) -> Table:
        a = self.const_val(src.start, "the range start")
        b = self.const_val(src.stop, "the range end")
        st = self.const_val(src.step, "the range step")
        name = src.name
        if None in (a.const, b.const, st.const):
            return _frame_table(pl.LazyFrame({name: pl.Series([], dtype=_DTYPES[a.ktype])}),
                                {name: a.ktype})
        if a.ktype in ("datetime", "timespan"):
            if b.ktype != a.ktype or st.ktype != "timespan":
                raise self.sem(f"a {a.ktype} range needs a {a.ktype} end and a timespan step",
                               src)
            step = int(st.const)
            if step == 0:
                raise self.sem("the range step must not be 0", src.step)
            n = max(0, (int(b.const) - int(a.const)) // step + 1)
            vals = pl.int_range(0, n, eager=True, dtype=pl.Int64) * step + int(a.const)
            s = vals.cast(_DTYPES[a.ktype]).alias(name)
            return _frame_table(pl.DataFrame([s]).lazy(), {name: a.ktype})
        if a.ktype not in NUMERIC or b.ktype not in NUMERIC or st.ktype not in NUMERIC:
            raise self.sem("range needs numbers, datetimes or timespans", src)
        if st.const == 0:
            raise self.sem("the range step must not be 0", src.step)
        kt = "long" if a.ktype == b.ktype == st.ktype == "long" else "real"
        n = max(0, math.floor((b.const - a.const) / st.const + 1e-9) + 1)
        if n > 100_000_000:
            raise self.sem(f"range would produce {n:,} rows", src, cls=KqlUnsupported)
        idx = pl.int_range(0, n, eager=True, dtype=pl.Int64)
        if kt == "long":
            s = idx * int(st.const) + int(a.const)
        else:
            s = idx.cast(pl.Float64) * float(st.const) + float(a.const)
        return _frame_table(pl.DataFrame([s.alias(name)]).lazy(), {name: kt})

    # ------------------------------------------------------------------ functions
    def _bind(self: Compiler, fd: N.FuncDef, args: list[Any], node: Any, t: Table
              ) -> tuple[dict[str, Val], dict[str, Table]]:
        if len(args) > len(fd.params):
            raise self.sem(f"the function takes {len(fd.params)} arguments, got {len(args)}",
                           node)
        scal: dict[str, Val] = {}
        tabs: dict[str, Table] = {}
        for i, p in enumerate(fd.params):
            a = args[i] if i < len(args) else p.default
            if a is None:
                raise self.sem(f"missing argument '{p.name}'", node)
            if p.ktype == "table":
                if isinstance(a, N.Pipeline):
                    tabs[p.name], _ = self.compile_pipeline(a)
                elif isinstance(a, N.SubQuery):
                    tabs[p.name], _ = self.compile_pipeline(a.pipeline)
                elif isinstance(a, N.Name):
                    tabs[p.name] = self.table_ref(N.TableRef(a.name, a.span))
                else:
                    raise self.sem(f"argument '{p.name}' must be a table", a)
            else:
                v = self.expr(a, t)
                if p.ktype in NUMERIC and v.ktype in NUMERIC and p.ktype != v.ktype:
                    dt = _DTYPES[p.ktype]
                    v = Val(v.expr.cast(dt), p.ktype, v.nullable,
                            const=None if not v.is_const or v.const is None else
                            (int(v.const) if p.ktype == "long" else float(v.const)),
                            is_const=v.is_const, agg=v.agg)
                scal[p.name] = v
        return scal, tabs

    def _in_function(self: Compiler, fd: N.FuncDef, scal: dict[str, Val],
                     tabs: dict[str, Table], body: Any) -> Any:
        saved = (dict(self.scalar_lets), dict(self.tabular_lets), dict(self.funcs),
                 dict(self.params))
        try:
            self.params = {**self.params, **scal}
            for k, v in tabs.items():
                self.tabular_lets[k] = v
            for k in scal:
                self.scalar_lets.pop(k, None)
            for let in fd.lets:
                self.compile_let(let)
            return body()
        finally:
            self.scalar_lets, self.tabular_lets, self.funcs, self.params = saved

    def invoke_tabular(self: Compiler, fd: N.FuncDef, args: list[Any], node: Any) -> Table:
        if not isinstance(fd.body, N.Pipeline):
            raise self.sem("this function returns a scalar, not a table", node)
        scal, tabs = self._bind(fd, args, node, _EMPTY)
        body = fd.body

        def run() -> Table:
            t, render = self.compile_pipeline(body)
            return t
        return self._in_function(fd, scal, tabs, run)

    def invoke_scalar(self: Compiler, fd: N.FuncDef, e: N.Call, t: Table) -> Val:
        if isinstance(fd.body, N.Pipeline):
            raise self.sem(f"'{e.name}' returns a table: use it as a table source", e)
        scal, tabs = self._bind(fd, list(e.args), e, t)
        body = fd.body
        return self._in_function(fd, scal, tabs, lambda: self.expr(body, t))

    def toscalar(self: Compiler, e: N.Call) -> Val:
        if len(e.args) != 1:
            raise self.sem("toscalar() takes one argument", e)
        a = e.args[0]
        if isinstance(a, N.SubQuery):
            t, _ = self.compile_pipeline(a.pipeline)
        elif isinstance(a, N.Name) and (a.name in self.tabular_lets or a.name in self.tables
                                        or a.name in self.funcs):
            t = self.table_ref(N.TableRef(a.name, a.span))
        else:
            v = self.scalar(a, _EMPTY)
            if v.is_const:
                return v
            # evaluated once (toscalar(new_guid()) is one value for every row)
            t = Table(pl.LazyFrame({"v": [0]}).select(self.materialize(v).alias("v")),
                      {"v": v.ktype}, {})
        return self.collect_first(t, e)

    def collect_first(self: Compiler, t: Table, node: Any) -> Val:
        if not t.schema:
            return _lit(None, "dynamic")
        first = next(iter(t.schema))
        kt = t.schema[first]
        df = t.lf.select(first).head(1).collect()
        value = df.item(0, 0) if df.height else None
        return _lit(_py_to_const(value, kt), kt)

    def subquery_values(self: Compiler, sq: N.SubQuery) -> tuple[list[Any], str]:
        t, _ = self.compile_pipeline(sq.pipeline)
        if not t.schema:
            return [], "dynamic"
        first = next(iter(t.schema))
        kt = t.schema[first]
        vals = t.lf.select(first).collect().to_series().to_list()
        return [_py_to_const(v, kt) for v in vals], kt

    def src_search(self: Compiler, src: N.SearchSource) -> Table:
        """``search pred``: ``union withsource=$table <tables> | where pred``."""
        if src.kind == "case_sensitive":
            raise self.sem("search kind=case_sensitive is not supported by the local engine",
                           src, cls=KqlUnsupported)

        def terms(e: N.Expr) -> None:
            if isinstance(e, N.Binary) and e.op in ("and", "or"):
                terms(e.left)
                terms(e.right)
            elif isinstance(e, N.Call) and e.name == "not" and e.args:
                terms(e.args[0])
            elif isinstance(e, N.Literal) and e.ktype == "string" or (
                    isinstance(e, N.Star) and e is not src.pred):
                raise self.sem("search terms over every column are not supported by the local"
                               " engine: name the column (Col has \"x\")", e,
                               cls=KqlUnsupported)
        terms(src.pred)
        tables = src.tables
        if tables is None:  # every table, tabular let and view in scope
            names = sorted({*self.tables, *self.tabular_lets,
                            *(n for n, f in self.funcs.items()
                              if not f.params and isinstance(f.body, N.Pipeline))})
            tables = [N.Pipeline(N.TableRef(n, span=src.span), [], span=src.span)
                      for n in names]
        t = self.op_union(N.Union(tables, None, "$table", span=src.span), None)
        if isinstance(src.pred, N.Star):
            return t
        return self.op_where(N.Where(src.pred, keyword="search", span=src.span), t)
