"""Compiler: a checked KQL AST -> a Polars LazyFrame plan (vectorised expressions only).

Every scalar expression compiles to a :class:`Val`: a Polars expression plus its KQL
type. ``dynamic`` values are carried as text: a JSON column (``Payload``) plus a JSON path
that is extracted with ``str.json_path_match`` only when used (strings come out without
their quotes, objects/arrays as JSON text, missing keys as null), or a Struct column
(``User``) whose fields are read directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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
from psanalytics.query.kql.expressions import ExprCompiler
from psanalytics.query.kql.naming import column_name
from psanalytics.query.kql.op_mvfields import column_paths, field_plan, read_paths
from psanalytics.query.kql.op_summarize import SummarizeOps
from psanalytics.query.kql.operators import TabularOps, first_rows
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


class Compiler(ExprCompiler, TabularOps, SummarizeOps):
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
        #: JSON paths read inside summarize's aggregates, as hidden input columns
        self.pre_agg: list[pl.Expr] = []
        self.pre_agg_prefix = "__json_"
        #: column -> {JSON path: hidden column holding it} while the operators that read
        #: those paths compile (after a ``mv-expand`` into fields, or a column's paths read
        #: in one pass: op_mvfields); None elsewhere
        self.path_cols: dict[str, dict[tuple[str | int, ...], str]] | None = None

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
        outer_cols, self.path_cols = self.path_cols, None
        try:
            return self._compile_ops(p)
        finally:
            self.path_cols = outer_cols

    def _compile_ops(self, p: N.Pipeline) -> tuple[Table, RenderSpec | None]:
        t = self.source(p.source)
        render: RenderSpec | None = None
        for i, op in enumerate(p.ops):
            if isinstance(op, N.Render):
                render = self.op_render(op, t)
                continue
            if not isinstance(op, (N.Where, N.Extend, N.Summarize)):
                self.path_cols = None
            # row order matters to a later take (sort/summarize/top/count reset it): then
            # summarize keeps group order (first appearance), so `take` stays deterministic
            order = p is not self._body or self._take_follows(p.ops[i + 1:])
            with self.within(order_matters=order, pre_agg=False,
                             dedupe_json=self._all_rows_follow(p.ops[i:])):
                if isinstance(op, N.MvExpand):
                    fields = field_plan(op, p.ops[i + 1:], set(self.funcs)) \
                        if self.allow_distinct_json else None
                    t = self.op_mvexpand(op, t, fields=fields)
                else:
                    if self.allow_distinct_json and isinstance(op, (N.Extend, N.Summarize)):
                        t = self.read_paths_once(p.ops[i:], t)
                    handler = getattr(self, "op_" + type(op).__name__.lower())
                    t = handler(op, t)
            if isinstance(op, N.Summarize):
                self.path_cols = None
        return t, render

    def read_paths_once(self, ops: list[N.Op], t: Table) -> Table:
        """Before ``extend ... | summarize`` (or a ``summarize``) that read two or more
        paths of one JSON column (B4: ``Payload.product.price`` and ``.name``): read
        them all in one pass over the column's distinct documents into hidden columns
        (the summarize drops them); each path alone would hash and map the column again."""
        cols = [c for c, k in t.schema.items() if k == "dynamic" and c in DYNAMIC_TEXT_COLUMNS
                and (self.path_cols is None or c not in self.path_cols)
                and t.dtypes.get(c) == pl.String]
        plan = column_paths(ops, cols) if cols else None
        if not plan:
            return t
        lf = t.lf
        self.path_cols = dict(self.path_cols or {})
        for col, paths in plan.items():
            prefix = "__jpf_"
            while any(c.startswith(prefix) for c in t.schema):
                prefix = "_" + prefix
            prefix += f"{col}_"
            hidden = [f"{prefix}{i}" for i in range(len(paths))]
            box = f"{prefix}paths"
            lf = lf.with_columns(pl.col(col).map_batches(
                read_paths(paths, hidden),
                return_dtype=pl.Struct({h: pl.String for h in hidden})).alias(box)).unnest(box)
            self.path_cols[col] = dict(zip(paths, hidden, strict=True))
        self.used_dedupe_json = True
        return Table(lf, t.schema, t.dtypes, t.ordered)

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

    # ------------------------------------------------------------------ operators
    def op_where(self, op: N.Where, t: Table) -> Table:
        v = self.scalar(op.pred, t)
        pred = self.as_bool(v, op.pred, f"'{op.keyword}' needs a bool predicate")
        return Table(t.lf.filter(pred), t.schema, t.dtypes, t.ordered)

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
            cols, kts = list(t.schema), list(t.schema.values())
            return Table(first_rows(t.lf, cols, kts), t.schema, t.dtypes, t.ordered,
                         distinct_of=(t.lf, cols, kts))
        exprs = []
        schema: dict[str, str] = {}
        for e in op.items:
            v = self.scalar(e, t)
            name = column_name(e)
            if name is None:
                raise self.sem("'distinct' takes column names", e, cls=KqlUnsupported)
            exprs.append(self.materialize(v).alias(name))
            schema[name] = v.ktype
        src = t.lf.with_columns(exprs).select(list(schema))
        cols, kts = list(schema), list(schema.values())
        return Table(first_rows(src, cols, kts), schema, {}, t.ordered,
                     distinct_of=(src, cols, kts))

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
            if _same_for_every_row(k.expr, t, self.funcs):
                # (`sort by pack_array(1)`: one value, which Polars' sort refuses beside a
                # longer frame) orders nothing: the sort is stable
                self.scalar(k.expr, t)  # its errors still
                continue
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


#: functions of no column whose value differs per row
_PER_ROW = frozenset({"new_guid", "rand", "row_number", "row_rank_dense", "row_rank_min",
                      "row_cumsum", "row_window_session", "prev", "next"})


def _same_for_every_row(e: N.Expr, t: Table, funcs: Mapping[str, Any]) -> bool:
    """The expression reads no column of ``t`` and calls no per-row or user function."""
    for node in _walk(e):
        if isinstance(node, N.Name) and node.name in t.schema:
            return False
        if isinstance(node, (N.Call, N.SubQuery, N.Star)) and (
                not isinstance(node, N.Call) or node.name in _PER_ROW or node.name in funcs):
            return False
    return True


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, (list, tuple)):
        for x in node:
            yield from _walk(x)
    elif isinstance(node, N.Node):
        for x in N.children(node):
            yield from _walk(x)


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

