"""Compiler: a checked KQL AST -> a Polars LazyFrame plan (vectorised expressions only).

Every scalar expression compiles to a :class:`Val`: a Polars expression plus its KQL
type. ``dynamic`` values are carried as text: a JSON column (``Payload``) plus a JSON path
that is extracted with ``str.json_path_match`` only when used (strings come out without
their quotes, objects/arrays as JSON text, missing keys as null), or a Struct column
(``User``) whose fields are read directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from psanalytics._time import timedelta_to_ns
from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import (
    KqlError,
    KqlSemanticError,
    KqlUnsupported,
    suggest,
)
from psanalytics.query.kql.functions import (
    AGG_IMPLS,
    AGGREGATES,
    FUNC_IMPLS,
    SCALAR_FUNCTIONS,
    UNSUPPORTED_FUNCTIONS,
)
from psanalytics.query.kql.naming import aggregate_name, column_name
from psanalytics.query.kql.operators import TabularOps
from psanalytics.query.kql.types import (  # noqa: F401 - re-exported
    _DTYPES,
    DAY_NS,
    DYNAMIC_TEXT_COLUMNS,
    NUMERIC,
    ORDERED,
    RENDER_KINDS,
    SPAN_DTYPE,
    TIME_DTYPE,
    Compiled,
    RenderSpec,
    Scope,
    Table,
    Val,
    _json_path,
    _list_series,
    _lit,
    _ns,
    _rust_escape,
    ktype_of,
)


def param_literal(name: str, value: Any) -> N.Expr:
    """A Python value -> typed literal node (for ``params=`` let injection)."""
    if isinstance(value, bool):
        return N.Literal(value, "bool")
    if isinstance(value, int):
        return N.Literal(value, "long")
    if isinstance(value, float):
        return N.Literal(value, "real")
    if isinstance(value, str):
        return N.Literal(value, "string")
    if isinstance(value, datetime):
        return N.Literal(_ns(value), "datetime")
    if isinstance(value, date):
        return N.Literal(_ns(datetime(value.year, value.month, value.day)), "datetime")
    if isinstance(value, timedelta):
        return N.Literal(timedelta_to_ns(value), "timespan")
    if isinstance(value, (list, tuple)):
        for v in value:
            if not isinstance(v, (str, int, float, bool)) or v is None:
                raise KqlSemanticError(f"parameter {name!r}: list items must be str, int, "
                                       f"float or bool, not {type(v).__name__}")
        return N.Literal(list(value), "dynamic")
    if value is None:
        return N.Literal(None, "dynamic")
    raise KqlSemanticError(f"parameter {name!r}: unsupported value type "
                           f"{type(value).__name__} (use str, int, float, bool, datetime, "
                           "timedelta or a list)")


def schema_tables(tables: Mapping[str, Any] | None) -> dict[str, pl.LazyFrame]:
    """Table mapping (frames, LazyFrames or schemas) -> empty/lazy frames for checking."""
    from psanalytics.schema import EVENTS_SCHEMA

    if tables is None:
        return {"Events": pl.LazyFrame(schema=EVENTS_SCHEMA)}
    out: dict[str, pl.LazyFrame] = {}
    for k, v in tables.items():
        if isinstance(v, pl.LazyFrame):
            out[k] = v
        elif isinstance(v, pl.DataFrame):
            out[k] = v.lazy()
        else:
            out[k] = pl.LazyFrame(schema=pl.Schema(v))
    return out


class Compiler(TabularOps):
    """Compiles one query. The settings of a run (tables, text, clock, ``clean``,
    ``allow_distinct_json``) are fixed at construction; what depends on the position in
    the query is the immutable :class:`Scope` in ``self.scope``, changed only for the
    duration of a nested step by :meth:`within`. The let environment (``funcs``,
    ``scalar_lets``, ``tabular_lets``, ``params``) grows statement by statement."""

    def __init__(self, tables: Mapping[str, pl.LazyFrame], text: str | None, now_ns: int,
                 *, clean: set[str] | None = None, allow_distinct_json: bool = False):
        self.tables = tables
        #: let-defined functions and views
        self.funcs: dict[str, N.FuncDef] = {}
        #: scalar parameters of the function being inlined (they shadow columns)
        self.params: dict[str, Val] = {}
        self.text = text
        self.now_ns = now_ns
        self.scalar_lets: dict[str, tuple[Val, N.Let]] = {}
        self.tabular_lets: dict[str, Table] = {}
        self.table_cache: dict[str, Table] = {}
        self._body: N.Pipeline | None = None
        #: tables whose string columns are known to hold no nulls
        self.clean: frozenset[str] = frozenset(tables if clean is None else clean)
        self.allow_distinct_json = allow_distinct_json
        self.scope = Scope()
        #: the plan reads JSON per distinct document somewhere (result of the run)
        self.used_dedupe_json = False

    @contextmanager
    def within(self, **changes: bool) -> Iterator[Scope]:
        """Run the body under a copy of the scope with ``changes``; restored after."""
        outer = self.scope
        self.scope = replace(outer, **changes)
        try:
            yield self.scope
        finally:
            self.scope = outer

    # ------------------------------------------------------------------ errors
    def sem(self, msg: str, node: Any, *, suggestion: str | None = None,
            cls: type[KqlError] = KqlSemanticError) -> KqlError:
        span = getattr(node, "span", None) if not isinstance(node, tuple) else node
        return cls(msg, query=self.text, span=span, suggestion=suggestion)

    # ------------------------------------------------------------------ query
    @staticmethod
    def _take_follows(ops: list[N.Op]) -> bool:
        for op in ops:
            if isinstance(op, N.Take):
                return True
            if isinstance(op, (N.Sort, N.Top, N.Summarize, N.Count)):
                return False
        return False

    def compile(self, q: N.Query) -> Compiled:
        self._body = q.body
        for let in q.lets:
            self.compile_let(let)
        table, render = self.compile_pipeline(q.body)
        return Compiled(table.lf, table.schema, render, self.used_dedupe_json)

    def compile_let(self, let: N.Let) -> None:
        if isinstance(let.value, N.FuncDef):
            self.funcs[let.name] = let.value
            self.scalar_lets.pop(let.name, None)
            self.tabular_lets.pop(let.name, None)
            return
        self.funcs.pop(let.name, None)
        if isinstance(let.value, N.Call) and let.value.name in self.funcs \
                and isinstance(self.funcs[let.value.name].body, N.Pipeline):
            self.tabular_lets[let.name] = self.invoke_tabular(
                self.funcs[let.value.name], list(let.value.args), let.value)
            self.scalar_lets.pop(let.name, None)
            return
        if isinstance(let.value, N.Pipeline):
            src = getattr(let.value.source, "name", None)
            if isinstance(let.value.source, N.TableRef) and (
                    not let.value.ops and src not in self.tabular_lets and src not in self.tables
                    and src not in self.funcs and src in self.scalar_lets):
                self.scalar_lets[let.name] = (self.scalar_lets[src][0], let)
                self.tabular_lets.pop(let.name, None)
                return
            table, render = self.compile_pipeline(let.value)
            if render is not None:
                raise self.sem("'render' is not allowed inside a let statement", let)
            self.tabular_lets[let.name] = table
            self.scalar_lets.pop(let.name, None)
        else:
            empty = Table(pl.LazyFrame(), {}, {})
            v = self.scalar(let.value, empty)
            if not v.is_const:
                # now()/ago() and arithmetic on literals are fine; columns are not
                pass
            self.scalar_lets[let.name] = (v, let)
            self.tabular_lets.pop(let.name, None)

    def table_ref(self, ref: N.TableRef) -> Table:
        if ref.name in self.tabular_lets:
            return self.tabular_lets[ref.name]
        if ref.name in self.table_cache:
            return self.table_cache[ref.name]
        if ref.name not in self.tables and ref.name in self.funcs:
            return self.invoke_tabular(self.funcs[ref.name], [], ref)
        if ref.name not in self.tables:
            if ref.name in self.scalar_lets:
                raise self.sem(f"'{ref.name}' is a scalar let, not a table", ref)
            cands = [*self.tables, *self.tabular_lets]
            raise self.sem(f"unknown table '{ref.name}' (tables: {', '.join(cands) or 'none'})",
                           ref, suggestion=suggest(ref.name, cands))
        lf = self.tables[ref.name]
        sch = lf.collect_schema()
        fixes = []
        schema: dict[str, str] = {}
        dtypes: dict[str, pl.DataType] = {}
        for name, dtype in sch.items():
            kt = ktype_of(name, dtype)
            schema[name] = kt
            if kt == "string" and dtype != pl.String:
                fixes.append(pl.col(name).cast(pl.String).fill_null(""))
                dtype = pl.String()
            elif kt == "string" and ref.name not in self.clean:
                fixes.append(pl.col(name).fill_null(""))  # strings are never null
            elif kt == "datetime" and dtype != TIME_DTYPE:
                if dtype == pl.Date or getattr(dtype, "time_zone", None) is None:
                    e = pl.col(name).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
                else:
                    e = pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("ns")
                fixes.append(e)
                dtype = TIME_DTYPE
            elif kt == "timespan" and dtype != SPAN_DTYPE:
                fixes.append(pl.col(name).cast(SPAN_DTYPE))
                dtype = SPAN_DTYPE
            elif kt == "long" and dtype != pl.Int64:
                fixes.append(pl.col(name).cast(pl.Int64))
                dtype = pl.Int64()
            elif kt == "real" and dtype != pl.Float64:
                fixes.append(pl.col(name).cast(pl.Float64))
                dtype = pl.Float64()
            dtypes[name] = dtype
        if fixes:
            lf = lf.with_columns(fixes)
        t = Table(lf, schema, dtypes)
        self.table_cache[ref.name] = t
        return t

    def compile_pipeline(self, p: N.Pipeline) -> tuple[Table, RenderSpec | None]:
        t = self.source(p.source)
        render: RenderSpec | None = None
        for i, op in enumerate(p.ops):
            if isinstance(op, N.Render):
                render = self.op_render(op, t)
                continue
            handler = getattr(self, "op_" + type(op).__name__.lower())
            # row order matters to a later take (sort/summarize/top/count reset it): then
            # summarize keeps group order (first appearance), so `take` stays deterministic
            order = p is not self._body or self._take_follows(p.ops[i + 1:])
            with self.within(order_matters=order,
                             dedupe_json=self._all_rows_follow(p.ops[i:])):
                t = handler(op, t)
        return t, render

    @staticmethod
    def _all_rows_follow(ops: list[N.Op]) -> bool:
        """True when every row of this operator's input is read anyway (a summarize, sort,
        top, count or distinct comes before any take): JSON paths are then worth reading
        per distinct document. Before a take, Polars reads just the rows it keeps."""
        for op in ops:
            if isinstance(op, N.Take):
                return False
            if isinstance(op, (N.Sort, N.Top, N.Summarize, N.Count, N.Distinct)):
                return True
        return False

    def json_path(self, base: pl.Expr, path: tuple[str | int, ...]) -> pl.Expr:
        """``base.str.json_path_match(path)``; on a JSON column read whole (see
        :meth:`_all_rows_follow`), each distinct document is parsed once instead.

        Payloads repeat a lot (a page view's Payload is the page's; 133k product views
        hold 4.7k distinct documents): rows are keyed by a 64-bit hash of the text, and
        the result is used only when the hashes are as many as the distinct texts (no
        collision: exact); otherwise every row is parsed as before.
        """
        jp = _json_path(path)
        if (not self.allow_distinct_json or not self.scope.dedupe_json
                or self.scope.agg or not base.meta.is_column()):
            return base.str.json_path_match(jp)
        self.used_dedupe_json = True
        h = base.hash()
        first = h.is_first_distinct()
        exact = base.n_unique() == h.n_unique()
        fast = h.replace_strict(h.filter(first), base.filter(first).str.json_path_match(jp),
                                default=None, return_dtype=pl.String)
        slow = pl.when(exact).then(pl.lit(None, pl.String)).otherwise(base).str.json_path_match(jp)
        return pl.when(exact).then(fast).otherwise(slow)

    # ------------------------------------------------------------------ operators
    def op_where(self, op: N.Where, t: Table) -> Table:
        v = self.scalar(op.pred, t)
        pred = self.as_bool(v, op.pred, f"'{op.keyword}' needs a bool predicate")
        return Table(t.lf.filter(pred), t.schema, t.dtypes, t.ordered)

    def as_bool(self, v: Val, node: N.Expr, msg: str) -> pl.Expr:
        if v.ktype == "bool":
            return v.expr
        if v.ktype == "dynamic" and not v.is_list:
            return self.dyn_text(v) == "true"
        raise self.sem(f"{msg}, but this expression is {v.ktype}", node)

    def _items(self, items: list[N.Assign], t: Table, opname: str
               ) -> list[tuple[str, Val, N.Assign]]:
        out: list[tuple[str, Val, N.Assign]] = []
        n_auto = 0
        used: set[str] = set()
        for it in items:
            v = self.scalar(it.expr, t)
            if it.name is not None:
                name = it.name
                if name in used:
                    raise self.sem(f"'{opname}' names the column '{name}' twice", it)
            else:
                name = column_name(it.expr)
                if name is None:
                    n_auto += 1
                    name = f"Column{n_auto}"
                    while name in used or (opname == "extend" and name in t.schema):
                        n_auto += 1
                        name = f"Column{n_auto}"
                base, k = name, 0
                while name in used:
                    k += 1
                    name = f"{base}{k}"
            used.add(name)
            out.append((name, v, it))
        return out

    def materialize(self, v: Val) -> pl.Expr:
        """Expression for an output column."""
        if v.ktype == "dynamic" and v.json_base is not None and v.json_path:
            return self.dyn_text(v)
        return v.expr

    def op_project(self, op: N.Project, t: Table) -> Table:
        items = self._items(op.items, t, "project")
        exprs = []
        schema: dict[str, str] = {}
        for name, v, _ in items:
            exprs.append(self.materialize(v).alias(name))
            schema[name] = v.ktype
        # with_columns broadcasts constants to the frame's height; select keeps the order
        lf = t.lf.with_columns(exprs).select(list(schema))
        return self._retyped(lf, schema, t.ordered)

    def _retyped(self, lf: pl.LazyFrame, schema: dict[str, str], ordered: bool) -> Table:
        # dtypes are recomputed lazily only when needed (struct fields for dynamic columns)
        return Table(lf, schema, {}, ordered)

    def op_extend(self, op: N.Extend, t: Table) -> Table:
        cur = t
        n_auto = 0
        for it in op.items:
            v = self.scalar(it.expr, cur)
            name = it.name if it.name is not None else column_name(it.expr)
            if name is None:
                n_auto += 1
                name = f"Column{n_auto}"
                while name in cur.schema:
                    n_auto += 1
                    name = f"Column{n_auto}"
            schema = dict(cur.schema)
            schema[name] = v.ktype
            dtypes = dict(cur.dtypes)
            dtypes.pop(name, None)
            if v.struct_fields is not None and v.json_base is None:
                dtypes[name] = pl.Struct({f: pl.String for f in v.struct_fields})
            cur = Table(cur.lf.with_columns(self.materialize(v).alias(name)), schema, dtypes,
                        cur.ordered)
        return cur

    def _match_columns(self, pat: N.Name, t: Table) -> list[str]:
        if "*" in pat.name:
            rx = re.compile("^" + ".*".join(re.escape(p) for p in pat.name.split("*")) + "$")
            return [c for c in t.schema if rx.match(c)]
        if pat.name not in t.schema:
            raise self.sem(f"unknown column '{pat.name}'", pat,
                           suggestion=suggest(pat.name, t.schema))
        return [pat.name]

    def op_projectaway(self, op: N.ProjectAway, t: Table) -> Table:
        chosen: list[str] = []
        for pat in op.names:
            for c in self._match_columns(pat, t):
                if c not in chosen:
                    chosen.append(c)
        if op.keep:
            keep = [c for c in t.schema if c in chosen]
        else:
            keep = [c for c in t.schema if c not in chosen]
        return Table(t.lf.select(keep), {c: t.schema[c] for c in keep},
                     {c: t.dtypes[c] for c in keep if c in t.dtypes}, t.ordered)

    def op_projectrename(self, op: N.ProjectRename, t: Table) -> Table:
        mapping: dict[str, str] = {}
        for new, old in op.pairs:
            if old.name not in t.schema:
                raise self.sem(f"unknown column '{old.name}'", old,
                               suggestion=suggest(old.name, t.schema))
            mapping[old.name] = new
        schema = {mapping.get(c, c): k for c, k in t.schema.items()}
        dtypes = {mapping.get(c, c): k for c, k in t.dtypes.items()}
        if len(schema) != len(t.schema):
            raise self.sem("'project-rename' would create two columns with the same name", op)
        return Table(t.lf.rename(mapping), schema, dtypes, t.ordered)

    def op_count(self, op: N.Count, t: Table) -> Table:
        return Table(t.lf.select(pl.len().cast(pl.Int64).alias("Count")), {"Count": "long"},
                     {"Count": pl.Int64()})

    def op_distinct(self, op: N.Distinct, t: Table) -> Table:
        if op.items is None:
            return Table(t.lf.unique(maintain_order=True), t.schema, t.dtypes, t.ordered)
        exprs = []
        schema: dict[str, str] = {}
        for e in op.items:
            v = self.scalar(e, t)
            name = column_name(e)
            if name is None:
                raise self.sem("'distinct' takes column names", e, cls=KqlUnsupported)
            exprs.append(self.materialize(v).alias(name))
            schema[name] = v.ktype
        lf = t.lf.with_columns(exprs).select(list(schema)).unique(maintain_order=True)
        return Table(lf, schema, {}, t.ordered)

    def const_count(self, e: N.Expr, t: Table, what: str) -> int:
        v = self.scalar(e, Table(pl.LazyFrame(), {}, {}))
        if not v.is_const or v.ktype != "long" or v.const is None or v.const < 0:
            raise self.sem(f"'{what}' needs a non-negative integer literal or scalar let", e)
        return int(v.const)

    def op_take(self, op: N.Take, t: Table) -> Table:
        n = self.const_count(op.count, t, op.keyword)
        return Table(t.lf.head(n), t.schema, t.dtypes, t.ordered)

    def sort_parts(self, keys: list[N.SortKey], t: Table
                   ) -> tuple[list[pl.Expr], list[bool], list[bool]]:
        exprs, desc, nulls_last = [], [], []
        for k in keys:
            v = self.scalar(k.expr, t)
            if v.ktype == "dynamic":
                if v.is_list:
                    raise self.sem("cannot sort by a dynamic array", k.expr)
                e = self.dyn_text(v)
            else:
                e = v.expr
            if v.ktype == "real":
                e = pl.when(e.is_nan()).then(None).otherwise(e)  # NaN sorts with null
            is_desc = k.asc is not True
            nf = k.nulls_first if k.nulls_first is not None else (not is_desc)
            exprs.append(e)
            desc.append(is_desc)
            nulls_last.append(not nf)
        return exprs, desc, nulls_last

    def op_sort(self, op: N.Sort, t: Table) -> Table:
        exprs, desc, nl = self.sort_parts(op.keys, t)
        lf = t.lf.sort(exprs, descending=desc, nulls_last=nl, maintain_order=True)
        return Table(lf, t.schema, t.dtypes, True)

    def op_top(self, op: N.Top, t: Table) -> Table:
        n = self.const_count(op.count, t, "top")
        exprs, desc, nl = self.sort_parts([op.key], t)
        lf = t.lf.sort(exprs, descending=desc, nulls_last=nl, maintain_order=True).head(n)
        return Table(lf, t.schema, t.dtypes, True)

    def op_render(self, op: N.Render, t: Table) -> RenderSpec:
        if op.kind not in RENDER_KINDS:
            raise self.sem(f"unknown render kind '{op.kind}'", op,
                           suggestion=suggest(op.kind, RENDER_KINDS))
        props: dict[str, Any] = {}
        empty = Table(pl.LazyFrame(), {}, {})
        for k, e in op.props:
            v = self.scalar(e, empty)
            if not v.is_const:
                raise self.sem(f"render property '{k}' must be a literal", e)
            val = v.const
            if v.ktype == "datetime" and val is not None:
                val = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                    microseconds=val // 1000)
            elif v.ktype == "timespan" and val is not None:
                val = timedelta(microseconds=val // 1000)
            props[k] = val
        return RenderSpec(op.kind, props)

    def op_summarize(self, op: N.Summarize, t: Table) -> Table:
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
        key_names = list(used)
        for it in op.aggs:
            e = it.expr
            if isinstance(e, N.Call) and e.name in ("arg_max", "arg_min"):
                for name, ex, kt in self.agg_arg(e, t, key_names, it.name, bool(keys)):
                    name = unique(name)
                    aggs.append(ex.alias(name))
                    schema[name] = kt
                continue
            v = self.scalar(e, t, agg_ctx=True, grouped=bool(keys))
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
        if keys:
            lf = t.lf.group_by(keys, maintain_order=self.scope.order_matters).agg(aggs)
        else:
            lf = t.lf.select(aggs)
        return Table(lf, schema, {}, False)

    def agg_arg(self, e: N.Call, t: Table, keys: list[str], alias: str | None,
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

    # ------------------------------------------------------------------ scalars
    def scalar(self, e: N.Expr, t: Table, *, agg_ctx: bool = False,
               grouped: bool = False) -> Val:
        with self.within(agg=agg_ctx, in_agg=False, grouped=grouped):
            return self.expr(e, t)

    def expr(self, e: N.Expr, t: Table) -> Val:
        m = getattr(self, "x_" + type(e).__name__.lower())
        return m(e, t)

    def x_literal(self, e: N.Literal, t: Table) -> Val:
        return _lit(e.value, e.ktype)

    def x_subquery(self, e: N.SubQuery, t: Table) -> Val:
        raise self.sem("a tabular expression is not a value here (use toscalar(...))", e)

    def x_star(self, e: N.Star, t: Table) -> Val:
        raise self.sem("'*' (all columns) is only supported in count(*), arg_max(e, *) and "
                       "arg_min(e, *) by the local engine", e, cls=KqlUnsupported)

    def x_name(self, e: N.Name, t: Table) -> Val:
        if e.name in self.params:
            return self.params[e.name]
        in_cols = e.name in t.schema
        if in_cols and e.name in self.scalar_lets:
            raise self.sem(f"'{e.name}' is both a column and a scalar let: rename the let "
                           "(the local engine refuses to guess which one is meant)", e)
        if in_cols:
            if self.scope.agg and not self.scope.in_agg:
                raise self.sem(f"column '{e.name}' must be inside an aggregate function in "
                               "'summarize'", e)
            kt = t.schema[e.name]
            dtype = t.dtypes.get(e.name)
            if dtype is None and kt == "dynamic":
                # after project/summarize: ask the plan (schema only, no data read)
                dtype = t.lf.collect_schema().get(e.name)
                if dtype is not None:
                    t.dtypes[e.name] = dtype
            v = Val(pl.col(e.name), kt, nullable=kt != "string")
            if kt == "dynamic":
                if isinstance(dtype, pl.Struct):
                    v.struct_fields = tuple(f.name for f in dtype.fields)
                elif isinstance(dtype, (pl.List, pl.Array)):
                    v.is_list = True
                else:
                    v.json_base = pl.col(e.name)
                    v.json_any = e.name not in DYNAMIC_TEXT_COLUMNS
            return v
        if e.name in self.scalar_lets:
            return self.scalar_lets[e.name][0]
        if e.name in self.tabular_lets or e.name in self.tables:
            raise self.sem(f"'{e.name}' is a table, not a value", e)
        if e.name in SCALAR_FUNCTIONS or e.name in AGGREGATES:
            raise self.sem(f"'{e.name}' is a function: call it as {e.name}(...)", e)
        cands = [*t.schema, *self.scalar_lets]
        raise self.sem(f"unknown column or name '{e.name}'", e,
                       suggestion=suggest(e.name, cands))

    # dynamic access ------------------------------------------------------
    def dyn_text(self, v: Val) -> pl.Expr:
        """The text form of a dynamic value (JSON path result; null when missing)."""
        if v.json_base is not None and v.json_path:
            return self.json_path(v.json_base, v.json_path)
        if v.struct_fields is not None:
            return v.expr.struct.json_encode()
        if v.json_any:
            return v.expr.str.json_path_match("$")
        return v.expr

    def member(self, base: Val, key: str | int, node: N.Expr) -> Val:
        if base.ktype != "dynamic":
            raise self.sem(f"'.{key}' needs a dynamic value, but this is {base.ktype}", node)
        if base.is_list:
            raise self.sem("indexing into dynamic arrays is not supported by the local engine",
                           node, cls=KqlUnsupported)
        if base.struct_fields is not None:
            if isinstance(key, str) and key in base.struct_fields:
                return Val(base.expr.struct.field(key), "dynamic", True)
            return _lit(None, "dynamic")
        if isinstance(key, int) and key < 0:
            raise self.sem("negative array indexes are not supported by the local engine",
                           node, cls=KqlUnsupported)
        if base.json_base is not None:
            path = (*base.json_path, key)
            return Val(self.json_path(base.json_base, path), "dynamic", True,
                       json_base=base.json_base, json_path=path)
        text = self.dyn_text(base)
        return Val(text.str.json_path_match(_json_path((key,))), "dynamic", True,
                   json_base=text, json_path=(key,))

    def x_member(self, e: N.Member, t: Table) -> Val:
        return self.member(self.expr(e.obj, t), e.key, e)

    def x_index(self, e: N.Index, t: Table) -> Val:
        base = self.expr(e.obj, t)
        idx = e.index
        if isinstance(idx, N.Literal) and idx.ktype == "long" and idx.value is not None:
            return self.member(base, int(idx.value), e)
        raise self.sem("computed keys/indexes in dynamic access are not supported by the "
                       "local engine", e.index, cls=KqlUnsupported)

    # operators -------------------------------------------------------------
    def x_unary(self, e: N.Unary, t: Table) -> Val:
        v = self.numeric(self.expr(e.operand, t), e.operand, allow_time=True)
        if v.ktype == "datetime":
            raise self.sem("cannot negate a datetime", e)
        return Val(-v.expr, v.ktype, v.nullable, agg=v.agg)

    def numeric(self, v: Val, node: N.Expr, allow_time: bool = False) -> Val:
        if v.ktype in NUMERIC or (allow_time and v.ktype in ("datetime", "timespan")):
            return v
        if v.ktype == "dynamic" and not v.is_list:
            return Val(self.dyn_text(v).cast(pl.Float64, strict=False), "real", True,
                       agg=v.agg)
        if v.ktype == "bool":
            return Val(v.expr.cast(pl.Int64), "long", v.nullable, agg=v.agg)
        raise self.sem(f"expected a number here, but this expression is {v.ktype}", node)

    def x_binary(self, e: N.Binary, t: Table) -> Val:
        op = e.op
        if op in ("and", "or"):
            # A chain of one operator is a tree as deep as it is long: walk it without
            # recursion and combine the terms flat (Kleene logic, as & and | are).
            terms, stack = [], [e]
            while stack:
                n = stack.pop()
                if isinstance(n, N.Binary) and n.op == op:
                    stack += [n.right, n.left]
                else:
                    terms.append(n)
            exprs = [self.as_bool(self.expr(n, t), n, f"'{op}' needs bool operands") for n in terms]
            if len(exprs) == 2:
                a, b = exprs
                return Val(a & b if op == "and" else a | b, "bool", True)
            return Val(pl.all_horizontal(exprs) if op == "and" else pl.any_horizontal(exprs), "bool", True)
        left = self.expr(e.left, t)
        right = self.expr(e.right, t)
        agg = left.agg or right.agg
        if op in ("+", "-", "*", "/", "%"):
            return self.arith(op, left, right, e)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return self.compare(op, left, right, e)
        if op in ("=~", "!~"):
            a = self.stringish(left, e.left)
            b = self.stringish(right, e.right)
            r = a.str.to_lowercase() == b.str.to_lowercase()
            r = r.fill_null(False) if (left.nullable or right.nullable) else r
            return Val(~r if op == "!~" else r, "bool", False, agg=agg)
        if op == "matches regex":
            a = self.stringish(left, e.left)
            if not right.is_const or right.ktype != "string":
                raise self.sem("'matches regex' needs a string literal pattern", e.right,
                               cls=KqlUnsupported)
            self.check_regex(right.const, e.right)
            return Val(a.str.contains(right.const).fill_null(False), "bool", False, agg=agg)
        return self.string_op(op, left, right, e)

    def check_regex(self, pattern: str, node: N.Expr) -> None:
        try:
            pl.select(pl.lit("").str.contains(pattern))
        except Exception as exc:  # polars raises ComputeError for bad patterns
            msg = str(exc).split("\n\nThis error occurred")[0].strip()
            raise self.sem(f"invalid regular expression: {msg}", node) from None

    def stringish(self, v: Val, node: N.Expr) -> pl.Expr:
        if v.ktype == "string":
            return v.expr
        if v.ktype == "dynamic" and not v.is_list:
            return self.dyn_text(v)
        raise self.sem(f"expected a string here, but this expression is {v.ktype}", node)

    def string_op(self, op: str, left: Val, right: Val, e: N.Binary) -> Val:
        neg = op.startswith("!")
        base = op.lstrip("!")
        cs = base.endswith("_cs")
        kind = base[:-3] if cs else base
        a = self.stringish(left, e.left)
        if not right.is_const:
            if kind == "contains" and right.ktype == "string":
                r = (a.str.contains(right.expr, literal=True) if cs else
                     a.str.to_lowercase().str.contains(right.expr.str.to_lowercase(),
                                                       literal=True))
                r = r.fill_null(False)
                return Val(~r if neg else r, "bool", False)
            raise self.sem(f"'{op}' needs a string literal on the right locally", e.right,
                           cls=KqlUnsupported)
        needle = right.const
        if right.ktype not in ("string", "long", "real", "bool", "dynamic") or needle is None:
            raise self.sem(f"'{op}' needs a string on the right", e.right)
        needle = str(needle).lower() if isinstance(needle, bool) else str(needle)
        flags = "" if cs else "(?i)"
        esc = _rust_escape(needle)
        if kind == "contains":
            r = (a.str.contains(needle, literal=True) if cs
                 else a.str.contains(flags + esc))
        elif kind == "startswith":
            r = a.str.starts_with(needle) if cs else a.str.contains(flags + "^" + esc)
        elif kind == "endswith":
            r = a.str.ends_with(needle) if cs else a.str.contains(flags + esc + "$")
        elif kind == "has":
            if needle == "":
                r = a.is_not_null()  # every (non-null) text has the empty term
            else:
                r = a.str.contains(flags + r"(?:^|[^A-Za-z0-9])" + esc
                                   + r"(?:[^A-Za-z0-9]|$)")
        elif kind == "hasprefix":
            r = a.str.contains(flags + r"(?:^|[^A-Za-z0-9])" + esc)
        elif kind == "hassuffix":
            r = a.str.contains(flags + esc + r"(?:[^A-Za-z0-9]|$)")
        else:  # pragma: no cover
            raise self.sem(f"unknown operator '{op}'", e)
        if left.nullable:
            r = r.fill_null(False)
        return Val(~r if neg else r, "bool", False, agg=left.agg)

    def unify(self, a: Val, b: Val, node: N.Expr, op: str) -> tuple[pl.Expr, pl.Expr, str]:
        """Bring two operands to a common type for comparison."""
        ka, kb = a.ktype, b.ktype
        if ka == kb and ka != "dynamic":
            return a.expr, b.expr, ka
        if ka in NUMERIC and kb in NUMERIC:
            return a.expr.cast(pl.Float64), b.expr.cast(pl.Float64), "real"
        if ka == "dynamic" or kb == "dynamic":
            d, o = (a, b) if ka == "dynamic" else (b, a)
            if d.is_list or o.is_list:
                raise self.sem(f"cannot compare dynamic arrays with '{op}'", node,
                               cls=KqlUnsupported)
            dt = self.dyn_text(d)
            if o.ktype in ("string", "dynamic"):
                ot = o.expr if o.ktype == "string" else self.dyn_text(o)
                x, y = dt, ot
                kind = "string"
            elif o.ktype in NUMERIC:
                x, y = dt.cast(pl.Float64, strict=False), o.expr.cast(pl.Float64)
                kind = "real"
            elif o.ktype == "bool":
                x, y = dt, pl.when(o.expr).then(pl.lit("true")).otherwise(pl.lit("false"))
                kind = "string"
            elif o.ktype == "datetime":
                from psanalytics.schema import parse_time_expr
                x, y = parse_time_expr(dt), o.expr
                kind = "datetime"
            else:
                raise self.sem(f"cannot compare dynamic with {o.ktype}", node,
                               cls=KqlUnsupported)
            return (x, y, kind) if ka == "dynamic" else (y, x, kind)
        raise self.sem(f"cannot compare {ka} with {kb} using '{op}'", node)

    def compare(self, op: str, a: Val, b: Val, e: N.Binary) -> Val:
        x, y, kind = self.unify(a, b, e, op)
        agg = a.agg or b.agg
        nullable = a.nullable or b.nullable or kind != "string"
        if op in ("<", "<=", ">", ">=") and kind not in ORDERED:
            if kind == "string":
                raise self.sem(f"ordering comparison '{op}' on strings is not supported by "
                               "the local engine", e, cls=KqlUnsupported)
            raise self.sem(f"'{op}' cannot compare {kind} values", e)
        if op in ("==", "!="):
            # Kusto: one null side -> == false, != true; both null -> null
            r = x == y if op == "==" else x != y
            if not nullable:
                return Val(r, "bool", False, agg=agg)
            r = x.eq_missing(y) if op == "==" else x.ne_missing(y)
            if (a.is_const and a.const is not None) or (b.is_const and b.const is not None) \
                    or kind == "string" and not (a.nullable and b.nullable):
                return Val(r, "bool", False, agg=agg)
            r = pl.when(x.is_null() & y.is_null()).then(pl.lit(None, pl.Boolean)).otherwise(r)
            return Val(r, "bool", True, agg=agg)
        r = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        return Val(r, "bool", True, agg=agg)

    def arith(self, op: str, a: Val, b: Val, e: N.Binary) -> Val:
        ka, kb = a.ktype, b.ktype
        agg = a.agg or b.agg
        if ka == "dynamic":
            a = self.numeric(a, e.left)
            ka = a.ktype
        if kb == "dynamic":
            b = self.numeric(b, e.right)
            kb = b.ktype
        x, y = a.expr, b.expr
        if ka in NUMERIC and kb in NUMERIC:
            if ka == "long" and kb == "long":
                if op == "/":
                    r = pl.when(y == 0).then(None).otherwise(x.truncdiv(y))
                    return Val(r, "long", True, agg=agg)
                if op == "%":
                    # Kusto: 0 <= N % D < abs(D) (-14 % 12 == 10, 14 % -12 == 2)
                    r = pl.when(y == 0).then(None).otherwise(x % y.abs())
                    return Val(r, "long", True, agg=agg)
                return Val({"+": x + y, "-": x - y, "*": x * y}[op], "long",
                           a.nullable or b.nullable, agg=agg)
            x, y = x.cast(pl.Float64), y.cast(pl.Float64)
            if op == "%":
                ay = y.abs()
                r = x - (x / ay).floor() * ay
            else:
                r = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
            return Val(r, "real", True, agg=agg)
        pair = (ka, kb, op)
        if pair in (("datetime", "timespan", "+"), ("datetime", "timespan", "-"),
                    ("timespan", "datetime", "+")):
            r = x + y if op == "+" else x - y
            return Val(r, "datetime", True, agg=agg)
        if pair == ("datetime", "datetime", "-"):
            return Val(x - y, "timespan", True, agg=agg)
        if ka == "timespan" and kb == "timespan" and op in "+-":
            return Val(x + y if op == "+" else x - y, "timespan", True, agg=agg)
        if ka == "timespan" and kb == "timespan" and op == "/":
            r = x.cast(pl.Int64).cast(pl.Float64) / y.cast(pl.Int64).cast(pl.Float64)
            return Val(r, "real", True, agg=agg)
        if ka == "timespan" and kb in NUMERIC and op in "*/":
            ns = x.cast(pl.Int64).cast(pl.Float64)
            r = ns * y.cast(pl.Float64) if op == "*" else ns / y.cast(pl.Float64)
            return Val(r.round(0).cast(pl.Int64).cast(SPAN_DTYPE), "timespan", True, agg=agg)
        if kb == "timespan" and ka in NUMERIC and op == "*":
            r = y.cast(pl.Int64).cast(pl.Float64) * x.cast(pl.Float64)
            return Val(r.round(0).cast(pl.Int64).cast(SPAN_DTYPE), "timespan", True, agg=agg)
        if ka == "string" and kb == "string" and op == "+":
            raise self.sem("'+' does not join strings in KQL: use strcat(a, b)", e)
        raise self.sem(f"'{op}' cannot combine {ka} and {kb}", e)

    def x_inlist(self, e: N.InList, t: Table) -> Val:
        left = self.expr(e.left, t)
        op = e.op
        neg = op.startswith("!")
        base = op.lstrip("!")
        values: list[Any] = []
        kinds: set[str] = set()
        for it in e.items:
            if isinstance(it, N.SubQuery):
                sub, kt = self.subquery_values(it)
                values.extend(sub)
                kinds.add(kt)
                continue
            v = self.expr(it, t)
            if not v.is_const:
                raise self.sem(f"'{op}' needs literal values or scalar lets locally", it,
                               cls=KqlUnsupported)
            if isinstance(v.const, list):
                values.extend(v.const)
                kinds.update("string" if isinstance(x, str) else "real" for x in v.const)
            else:
                values.append(v.const)
                kinds.add(v.ktype)
        if base in ("has_any", "has_all"):
            a = self.stringish(left, e.left)
            needles = [str(v) for v in values if v is not None]
            if not needles:
                r = pl.lit(base == "has_all")
            else:
                parts = [a.str.contains("(?i)(?:^|[^A-Za-z0-9])" + _rust_escape(n)
                                        + "(?:[^A-Za-z0-9]|$)") for n in needles]
                if base == "has_any":
                    r = a.str.contains("(?i)(?:^|[^A-Za-z0-9])(?:"
                                       + "|".join(_rust_escape(n) for n in needles)
                                       + ")(?:[^A-Za-z0-9]|$)")
                else:
                    r = parts[0]
                    for p in parts[1:]:
                        r = r & p
            return Val(r.fill_null(False), "bool", False)
        ci = base == "in~"
        lk = left.ktype
        if lk == "dynamic":
            if left.is_list:
                raise self.sem(f"'{op}' on a dynamic array is not supported locally", e.left,
                               cls=KqlUnsupported)
            x = self.dyn_text(left)
            vals = [("true" if v else "false") if isinstance(v, bool) else
                    (str(v) if not isinstance(v, float) or not v.is_integer() else str(v))
                    for v in values if v is not None]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
                   if v is not None) and values:
                x = x.cast(pl.Float64, strict=False)
                vals = [float(v) for v in values if v is not None]
                series = pl.Series(vals, dtype=pl.Float64)
            else:
                vals = [v.lower() if ci else v for v in vals]
                series = pl.Series(vals, dtype=pl.String)
                if ci:
                    x = x.str.to_lowercase()
        elif lk == "string":
            x = left.expr
            bad = [v for v in values if v is not None and not isinstance(v, str)]
            if bad:
                raise self.sem(f"'{op}' compares a string with a non-string value", e)
            vals = [v for v in values if v is not None]
            if ci:
                x = x.str.to_lowercase()
                vals = [v.lower() for v in vals]
            series = pl.Series(vals, dtype=pl.String)
        elif lk in NUMERIC:
            vals = [v for v in values if v is not None]
            if any(isinstance(v, (str, bool)) for v in vals):
                raise self.sem(f"'{op}' compares a number with a non-number value", e)
            if lk == "long" and all(isinstance(v, int) for v in vals):
                x, series = left.expr, pl.Series(vals, dtype=pl.Int64)
            else:
                x, series = left.expr.cast(pl.Float64), pl.Series(vals, dtype=pl.Float64)
        elif lk in ("datetime", "timespan"):
            if kinds - {lk} or any(not isinstance(v, int) or isinstance(v, bool)
                                   for v in values if v is not None):
                raise self.sem(f"'{op}' compares a {lk} with other kinds of values", e)
            vals = [v for v in values if v is not None]
            x = left.expr
            series = pl.Series(vals, dtype=pl.Int64).cast(_DTYPES[lk])
        elif lk == "bool":
            vals = [v for v in values if v is not None]
            if any(not isinstance(v, bool) for v in vals):
                raise self.sem(f"'{op}' compares a bool with non-bool values", e)
            x = left.expr
            series = pl.Series(vals, dtype=pl.Boolean)
        else:
            raise self.sem(f"'{op}' is not supported for {lk} values", e)
        r = x.is_in(series.implode()).fill_null(False)
        return Val(~r if neg else r, "bool", False, agg=left.agg)

    def x_between(self, e: N.Between, t: Table) -> Val:
        x = self.expr(e.left, t)
        lo = self.expr(e.low, t)
        hi = self.expr(e.high, t)
        if x.ktype == "dynamic":
            x = self.numeric(x, e.left)
        if x.ktype == "datetime" and hi.ktype == "timespan":
            if lo.ktype != "datetime":
                raise self.sem("'between' with a timespan upper bound needs a datetime lower"
                               " bound", e.low)
            hi = Val(lo.expr + hi.expr, "datetime", True)
        for b, node in ((lo, e.low), (hi, e.high)):
            ok = (b.ktype == x.ktype) or (b.ktype in NUMERIC and x.ktype in NUMERIC)
            if not ok:
                raise self.sem(f"'between' bound is {b.ktype} but the value is {x.ktype}",
                               node)
        if x.ktype not in ORDERED:
            raise self.sem(f"'between' needs numbers, datetimes or timespans, not {x.ktype}",
                           e.left)
        xe, le, he = x.expr, lo.expr, hi.expr
        if x.ktype in NUMERIC and (lo.ktype != x.ktype or hi.ktype != x.ktype):
            xe, le, he = xe.cast(pl.Float64), le.cast(pl.Float64), he.cast(pl.Float64)
        r = (xe >= le) & (xe <= he)
        if e.negated:
            r = ~r
        return Val(r, "bool", True, agg=x.agg)

    def x_call(self, e: N.Call, t: Table) -> Val:
        name = e.name
        if name in self.funcs:
            return self.invoke_scalar(self.funcs[name], e, t)
        if name == "toscalar":
            return self.toscalar(e)
        if name in AGGREGATES and not (name in ("min", "max") and False):
            if not self.scope.agg:
                raise self.sem(f"aggregate function '{name}' can only be used in "
                               "'summarize'", e, )
            if self.scope.in_agg:
                raise self.sem(f"aggregate '{name}' cannot be nested inside another "
                               "aggregate", e)
            with self.within(in_agg=True):
                return AGG_IMPLS[name](self, e, t)
        impl: Callable[..., Val] | None = FUNC_IMPLS.get(name)
        if impl is None:
            if name in UNSUPPORTED_FUNCTIONS or name in SCALAR_FUNCTIONS or name in AGGREGATES:
                raise self.sem(f"function '{name}' is not supported by the local engine",
                               e.name_span, cls=KqlUnsupported)
            cands = sorted({*FUNC_IMPLS, *AGGREGATES})
            hint = ""
            if name.lower() in cands:
                hint = ": function names are case-sensitive"
            raise self.sem(f"unknown function '{name}'{hint}", e.name_span,
                           suggestion=suggest(name, cands))
        return impl(self, e, t)


def compile_query(q: N.Query, tables: Mapping[str, pl.LazyFrame], *, text: str | None,
                  params: Mapping[str, Any] | None = None, now_ns: int,
                  clean: set[str] | None = None, distinct_json: bool = False) -> Compiled:
    """Compile a parsed query against lazy tables. ``params`` become leading lets.

    ``distinct_json`` lets JSON paths be read once per distinct document where every row
    is read anyway; such a plan must be collected on the in-memory engine without
    common-subexpression elimination (``Compiled.in_memory``), as :func:`execute` does.
    ``plan()`` leaves it off, so its LazyFrame runs anywhere."""
    if params:
        lets = []
        for k, v in params.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                raise KqlSemanticError(f"parameter name {k!r} is not a valid KQL identifier")
            lets.append(N.Let(k, param_literal(k, v)))
        q = N.Query([*lets, *q.lets], q.body, span=q.span)
    c = Compiler(tables, text, now_ns, clean=clean, allow_distinct_json=distinct_json)
    return c.compile(q)

