"""The tabular operators beyond the Profile Store subset (join, lookup, union, as,
mv-expand, parse, make-series, serialize, sample, sample-distinct, project-reorder,
getschema; parse and parse-where in :mod:`.op_parse`, mv-apply in :mod:`.op_apply`, top-nested in :mod:`.op_nested`; table sources
and let functions in :mod:`.sources`). A mixin of :class:`~psanalytics.query.kql.compiler.Compiler`:
every method compiles to Polars LazyFrame steps; nothing runs row by row in Python except
``mv-expand`` over JSON text (each distinct document is parsed once)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlSemanticError, KqlUnsupported, suggest
from psanalytics.query.kql.op_apply import ApplyOps
from psanalytics.query.kql.op_mvfields import MISSING, json_at, path_fields
from psanalytics.query.kql.op_nested import NestedOps
from psanalytics.query.kql.op_parse import ParseOps
from psanalytics.query.kql.sources import SourceOps, _frame_table
from psanalytics.query.kql.types import (
    _DTYPES,
    DAY_NS,
    NUMERIC,
    SPAN_DTYPE,
    TIME_DTYPE,
    Table,
    element_lists,
    json_elements,
    ktype_of,
)

if TYPE_CHECKING:  # pragma: no cover
    from psanalytics.query.kql.compiler import Compiler

_NET_TYPES = {
    "string": "System.String", "long": "System.Int64", "real": "System.Double",
    "bool": "System.SByte", "datetime": "System.DateTime", "timespan": "System.TimeSpan",
    "dynamic": "System.Object",
}


def _path_elements(path: tuple[str | int, ...], kind: str) -> Any:
    """JSON text -> the elements of the value at ``path`` (what ``json_path_match`` then
    :func:`json_elements` give, in one pass): each distinct document is parsed once with
    orjson and walked in Python, instead of Polars' ``json_path_match`` on every row (~4 us
    a row: B6's mv-expand over 50,000 Payloads spent 2/3 of its time there)."""
    def one(text: str | None) -> list[str | None]:
        v = json_at(text, path)
        if v is MISSING:
            return [None]
        if isinstance(v, list):
            return [orjson.dumps(x).decode() for x in v]
        if isinstance(v, dict):
            if kind == "array":
                return [orjson.dumps([k, x]).decode() for k, x in v.items()]
            return [orjson.dumps({k: x}).decode() for k, x in v.items()]
        if isinstance(v, str):  # json_path_match gives a string value without quotes
            return [v]
        return [orjson.dumps(v).decode()]

    return element_lists(one)


def first_rows(lf: pl.LazyFrame, keys: list[str], ktypes: list[str]) -> pl.LazyFrame:
    """The first row of every distinct ``keys`` value, in input order (``unique(subset=keys,
    keep="first", maintain_order=True)``).

    A filter on ``is_first_distinct()``: Polars' optimizer turns ``maintain_order`` off on
    a ``unique`` whose order nobody reads (before a join or a summarize), and its unordered
    ``unique`` is ~2x slower than the ordered one on 1 M rows of two string keys (B5 in
    benchmarks/kql.py). Dynamic keys (lists) keep ``unique``."""
    if not keys or "dynamic" in ktypes:
        return lf.unique(subset=keys or None, keep="first", maintain_order=True)
    first = pl.col(keys[0]) if len(keys) == 1 else pl.struct(keys)
    return lf.filter(first.is_first_distinct())


class TabularOps(SourceOps, ApplyOps, NestedOps, ParseOps):
    # ------------------------------------------------------------------ operators
    def op_as(self: Compiler, op: N.As, t: Table) -> Table:
        self.tabular_lets[op.name] = t
        return t

    def op_union(self: Compiler, op: N.Union, t: Table | None) -> Table:
        parts: list[tuple[str, Table]] = []
        if t is not None:
            parts.append(("union_arg0" if True else "", t))
        for p in op.tables:
            if isinstance(p.source, N.TableRef) and "*" in p.source.name:
                # a name pattern: every table, tabular let and view it matches, by name
                rx = re.compile("^" + ".*".join(map(re.escape, p.source.name.split("*")))
                                + "$")
                names = sorted({n for n in (*self.tables, *self.tabular_lets, *self.funcs)
                                if rx.match(n) and (n not in self.funcs
                                                    or not self.funcs[n].params)})
                if not names and not op.fuzzy:
                    raise self.sem(f"union: no table matches '{p.source.name}' (isfuzzy=true "
                                   "leaves such a pattern out)", p.source)
                for n in names:
                    parts.append((n, self.table_ref(N.TableRef(n, span=p.source.span))))
                continue
            tt, _ = self.compile_pipeline(p)
            label = p.source.name if isinstance(p.source, N.TableRef) and not p.ops else \
                f"union_arg{len(parts)}"
            parts.append((label, tt))
        if not parts:
            raise self.sem("union: no table matches any of the patterns", op)
        schema: dict[str, str] = {}
        for _, tt in parts:
            for c, k in tt.schema.items():
                if c in schema and schema[c] != k:
                    raise self.sem(f"union: column '{c}' is {schema[c]} in one table and {k} "
                                   "in another (not supported locally)", op,
                                   cls=KqlUnsupported)
                schema.setdefault(c, k)
        if op.kind == "inner":
            common = [c for c in schema if all(c in tt.schema for _, tt in parts)]
            schema = {c: schema[c] for c in common}
        lfs = []
        for label, tt in parts:
            cols = []
            for c, k in schema.items():
                if c in tt.schema:
                    cols.append(pl.col(c))
                else:
                    fill = pl.lit("") if k == "string" else pl.lit(None)
                    dt = tt.dtypes.get(c) or _DTYPES[k]
                    cols.append(fill.cast(dt if k != "dynamic" else pl.String).alias(c))
            lf = tt.lf.select(cols)
            if op.withsource is not None:
                lf = lf.select(pl.lit(label).alias(op.withsource), pl.all())
            lfs.append(lf)
        out = dict(schema)
        if op.withsource is not None:
            out = {op.withsource: "string", **schema}
        try:
            lf = pl.concat(lfs, how="vertical_relaxed")
        except pl.exceptions.PolarsError as exc:
            raise self.sem(f"union: the tables' columns do not line up ({exc})", op,
                           cls=KqlUnsupported) from None
        return _frame_table(lf, out, ordered=False)

    def _join_keys(self: Compiler, op: N.Join, left: Table, right: Table
                   ) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []

        def side(e: N.Expr) -> tuple[str, str] | None:
            if isinstance(e, N.Member) and isinstance(e.obj, N.Name) and \
                    e.obj.name in ("$left", "$right"):
                return e.obj.name, e.key
            return None

        def add(e: N.Expr) -> None:
            if isinstance(e, N.Binary) and e.op == "and":
                add(e.left)
                add(e.right)
                return
            if isinstance(e, N.Name):
                for tbl, what in ((left, "left"), (right, "right")):
                    if e.name not in tbl.schema:
                        raise self.sem(f"join key '{e.name}' is not a column of the {what} "
                                       "side", e, suggestion=suggest(e.name, tbl.schema))
                keys.append((e.name, e.name))
                return
            if isinstance(e, N.Binary) and e.op == "==":
                a, b = side(e.left), side(e.right)
                if a and b and a[0] != b[0]:
                    lk = a[1] if a[0] == "$left" else b[1]
                    rk = b[1] if b[0] == "$right" else a[1]
                    if lk not in left.schema:
                        raise self.sem(f"'{lk}' is not a column of the left side", e,
                                       suggestion=suggest(lk, left.schema))
                    if rk not in right.schema:
                        raise self.sem(f"'{rk}' is not a column of the right side", e,
                                       suggestion=suggest(rk, right.schema))
                    keys.append((lk, rk))
                    return
            raise self.sem(f"'{op.keyword}' conditions must be column names or "
                           "$left.a == $right.b", e, cls=KqlUnsupported)

        for e in op.on:
            add(e)
        for lk, rk in keys:
            if left.schema[lk] != right.schema[rk]:
                raise self.sem(f"join key types differ: {lk} is {left.schema[lk]}, {rk} is "
                               f"{right.schema[rk]}", op)
        return keys

    def op_join(self: Compiler, op: N.Join, t: Table) -> Table:
        right, _ = self.compile_pipeline(op.right)
        keys = self._join_keys(op, t, right)
        lks = [k for k, _ in keys]
        rks = [k for _, k in keys]
        if op.keyword == "lookup":
            kind = op.kind or "leftouter"
            drop = [r for r in rks]
            rcols = [c for c in right.schema if c not in drop]
            rename = {}
            for c in rcols:
                if c in t.schema:
                    raise self.sem(f"lookup: column '{c}' is on both sides (name it "
                                   "differently)", op, cls=KqlUnsupported)
            rlf = right.lf.select([*rks, *rcols]).rename(rename)
            lf = t.lf.join(rlf, left_on=lks, right_on=rks, how="left" if kind == "leftouter"
                           else "inner", maintain_order="left", coalesce=True)
            schema = {**t.schema, **{c: right.schema[c] for c in rcols}}
            return self._fill_strings(Table(lf, schema, {}, t.ordered))
        kind = op.kind or "innerunique"
        kind = {"anti": "leftanti", "leftantisemi": "leftanti", "semi": "leftsemi",
                "rightantisemi": "rightanti"}.get(kind, kind)
        left = t
        if kind in ("leftanti", "leftsemi"):
            how = "anti" if kind == "leftanti" else "semi"
            lf = left.lf.join(right.lf.select(rks).rename(dict(zip(rks, lks, strict=True)))
                              if lks != rks else right.lf.select(rks),
                              on=lks, how=how, maintain_order="left")
            return Table(lf, dict(left.schema), dict(left.dtypes), left.ordered)
        if kind in ("rightanti", "rightsemi"):
            how = "anti" if kind == "rightanti" else "semi"
            lsel = left.lf.select(lks)
            if lks != rks:
                lsel = lsel.rename(dict(zip(lks, rks, strict=True)))
            lf = right.lf.join(lsel, on=rks, how=how, maintain_order="left")
            return Table(lf, dict(right.schema), dict(right.dtypes), right.ordered)
        llf = left.lf
        if kind in ("inner", "innerunique") and left.distinct_of is not None \
                and set(lks) <= set(left.distinct_of[1]):
            # `distinct ... | join kind=inner (R) on k`: a row whose k is not in R joins
            # nothing, so drop it before the distinct (which then reads fewer rows: B5)
            src, cols, kts = left.distinct_of
            rkeys = right.lf.select(rks)
            if lks != rks:
                rkeys = rkeys.rename(dict(zip(rks, lks, strict=True)))
            keep = "left" if kind == "innerunique" or self.scope.order_matters else "none"
            llf = first_rows(src.join(rkeys, on=lks, how="semi", maintain_order=keep),
                             cols, kts)
        if kind == "innerunique":
            llf = first_rows(llf, lks, [left.schema[k] for k in lks])
        rename: dict[str, str] = {}
        taken = set(left.schema)
        for c in right.schema:
            new = c
            k = 0
            while new in taken:
                k += 1
                new = f"{c}{k}"
            taken.add(new)
            rename[c] = new
        rlf = right.lf.rename(rename)
        how = {"innerunique": "inner", "inner": "inner", "leftouter": "left",
               "rightouter": "right", "fullouter": "full"}[kind]
        order = ("right" if how == "right" else "left_right") if self.scope.order_matters \
            else "none"
        lf = llf.join(rlf, left_on=lks, right_on=[rename[r] for r in rks], how=how,
                      coalesce=False, maintain_order=order)
        schema = {**left.schema, **{rename[c]: k for c, k in right.schema.items()}}
        lf = lf.select(list(schema))
        out = Table(lf, schema, {}, left.ordered)
        return self._fill_strings(out) if how != "inner" else out

    def _fill_strings(self: Compiler, t: Table) -> Table:
        strs = [c for c, k in t.schema.items() if k == "string"]
        if not strs:
            return t
        return Table(t.lf.with_columns(pl.col(strs).fill_null("")), t.schema, t.dtypes,
                     t.ordered)

    def op_mvexpand(self: Compiler, op: N.MvExpand, t: Table,
                    fields: list[tuple[str | int, ...]] | None = None) -> Table:
        # Long because: three steps that share the per-column bookkeeping (element lists
        # by source kind, parallel padding, typed casts after the explode)
        from psanalytics.query.kql.naming import column_name
        kind = op.kind or "bag"
        if fields is not None:
            fast = self.mv_expand_fields(op, t, fields, kind)
            if fast is not None:
                return fast
        limit = None
        if op.limit is not None:
            limit = self.const_count(op.limit, t, "mv-expand limit")
        cur = t
        names: list[str] = []
        kinds: dict[str, str] = {}
        exprs = []
        for name, e, totype in op.items:
            v = self.scalar(e, cur)
            nm = name or column_name(e)
            if nm is None:
                raise self.sem("mv-expand: name this expression (Name = expr)", e)
            if v.ktype != "dynamic":
                raise self.sem(f"mv-expand needs a dynamic array or bag, not {v.ktype}", e)
            if v.is_list:
                lst = v.expr
                elem_kind = "list"
            else:
                if v.json_base is not None and v.json_path:
                    lst = v.json_base.map_batches(_path_elements(v.json_path, kind),
                                                  return_dtype=pl.List(pl.String))
                elif v.json_any and v.struct_fields is None:
                    lst = v.expr.map_batches(_path_elements((), kind),
                                             return_dtype=pl.List(pl.String))
                else:
                    text = v.expr.struct.json_encode() if v.struct_fields is not None \
                        else self.dyn_text(v)
                    lst = text.map_batches(json_elements(kind),
                                           return_dtype=pl.List(pl.String))
                elem_kind = "json"
            if limit is not None:
                lst = lst.list.head(limit)
            exprs.append(lst.alias(nm))
            names.append(nm)
            kinds[nm] = elem_kind if totype is None else totype
        if len(set(names)) != len(names):
            raise self.sem("mv-expand names a column twice", op)
        lf = cur.lf.with_columns(exprs)
        if len(names) > 1:
            # expand "in parallel": pad every array to the longest with nulls
            longest = pl.max_horizontal([pl.col(n).list.len() for n in names])
            pads = []
            for n in names:
                pad = pl.lit(None, dtype=pl.String if kinds[n] != "list" else None)
                padded = pl.concat_list([pl.col(n), pad.repeat_by(
                    (longest - pl.col(n).list.len()).clip(0))]) if kinds[n] != "list" else \
                    pl.col(n)
                pads.append(padded.alias(n))
            lf = lf.with_columns(pads)
        if op.itemindex is not None:
            lf = lf.with_columns(pl.int_ranges(0, pl.col(names[0]).list.len())
                                 .alias(op.itemindex))
        explode = [*names, *([op.itemindex] if op.itemindex else [])]
        before = lf.collect_schema() if "list" in kinds.values() else {}
        lf = lf.explode(explode, empty_as_null=False, keep_nulls=True)
        schema = dict(cur.schema)
        for n in names:
            schema[n] = "dynamic"
        if "list" in kinds.values():
            # typed arrays (make-series, make_list of numbers): the elements keep their
            # type (a datetime stays a datetime, as todatetime() of it expects)
            for n in names:
                inner = getattr(before[n], "inner", None)
                if kinds[n] == "list" and inner is not None and inner != pl.String:
                    schema[n] = ktype_of(n, inner)
        casts = []
        for n in names:
            k = kinds[n]
            if k in ("list", "json"):
                continue
            kq = {"int": "long", "decimal": "real", "guid": "string"}.get(k, k)
            src = pl.col(n)
            if kq == "dynamic":
                continue
            if kq == "string":
                e = src.str.json_path_match("$") if kinds[n] != "list" else src.cast(pl.String)
                casts.append(e.fill_null("").alias(n))
            elif kq in NUMERIC or kq == "bool":
                e = src.str.json_path_match("$") if True else src
                casts.append(e.cast(_DTYPES[kq], strict=False).alias(n))
            elif kq == "datetime":
                from psanalytics.schema import parse_time_expr
                casts.append(parse_time_expr(src.str.json_path_match("$")).alias(n))
            elif kq == "timespan":
                raise self.sem("mv-expand to typeof(timespan) is not supported locally", op,
                               cls=KqlUnsupported)
            schema[n] = kq
        if casts:
            lf = lf.with_columns(casts)
        if op.itemindex is not None:
            lf = lf.with_columns(pl.col(op.itemindex).cast(pl.Int64))
            schema[op.itemindex] = "long"
        order = list(dict.fromkeys([*cur.schema, *names,
                                    *([op.itemindex] if op.itemindex else [])]))
        lf = lf.select(order)
        return Table(lf, {c: schema[c] for c in order}, {}, cur.ordered)

    def mv_expand_fields(self: Compiler, op: N.MvExpand, t: Table,
                         fields: list[tuple[str | int, ...]], kind: str) -> Table | None:
        """``mv-expand`` of JSON text into hidden columns of the ``fields`` of each
        element (:mod:`.op_mvfields`), when its source is a JSON column or a path in one;
        None otherwise (the general path)."""
        from psanalytics.query.kql.naming import column_name
        name, e, _ = op.items[0]
        nm = name or column_name(e)
        v = self.scalar(e, t)
        if v.ktype != "dynamic" or v.is_list or v.struct_fields is not None \
                or v.path_col is not None or nm is None:
            return None
        if v.json_base is not None and v.json_path:
            src, path = v.json_base, v.json_path
        elif v.json_any:
            src, path = v.expr, ()
        else:
            return None
        prefix = "__mvf_"
        while any(c.startswith(prefix) for c in t.schema):
            prefix = "_" + prefix
        hidden = [f"{prefix}{i}" for i in range(len(fields))]
        box = f"{prefix}elements"
        lst = src.map_batches(path_fields(path, kind, fields, hidden),
                              return_dtype=pl.List(pl.Struct({h: pl.String for h in hidden})))
        keep = [c for c in t.schema if c != nm]
        lf = (t.lf.select(*keep, lst.alias(box))
              .explode(box, empty_as_null=False, keep_nulls=True).unnest(box))
        self.used_dedupe_json = True
        self.path_cols = {nm: dict(zip(fields, hidden, strict=True))}
        schema = {**t.schema, nm: "dynamic"}
        dtypes = {c: d for c, d in t.dtypes.items() if c != nm}
        dtypes[nm] = pl.String()
        return Table(lf, schema, dtypes, t.ordered)

    def op_serialize(self: Compiler, op: N.Serialize, t: Table) -> Table:
        if op.items:
            t = self.op_extend(N.Extend(op.items, span=op.span), t)
        return Table(t.lf, t.schema, t.dtypes, True)

    def op_sample(self: Compiler, op: N.Sample, t: Table) -> Table:
        n = self.const_count(op.count, t, "sample")
        lf = t.lf.select(pl.all().shuffle()).head(n)
        return Table(lf, t.schema, t.dtypes, False)

    def op_sampledistinct(self: Compiler, op: N.SampleDistinct, t: Table) -> Table:
        from psanalytics.query.kql.naming import column_name
        n = self.const_count(op.count, t, "sample-distinct")
        v = self.scalar(op.expr, t)
        name = column_name(op.expr)
        if name is None:
            raise self.sem("sample-distinct takes a column", op.expr, cls=KqlUnsupported)
        lf = t.lf.select(self.materialize(v).alias(name)).unique().head(n)
        return Table(lf, {name: v.ktype}, {}, False)

    def op_projectreorder(self: Compiler, op: N.ProjectReorder, t: Table) -> Table:
        first: list[str] = []
        for pat, order in op.names:
            found = self._match_columns(pat, t)
            if order in ("asc", "granny-asc"):
                found = sorted(found, key=str.lower if order == "granny-asc" else None)
            elif order in ("desc", "granny-desc"):
                found = sorted(found, key=str.lower if order == "granny-desc" else None,
                               reverse=True)
            for c in found:
                if c not in first:
                    first.append(c)
        order_cols = [*first, *[c for c in t.schema if c not in first]]
        return Table(t.lf.select(order_cols), {c: t.schema[c] for c in order_cols},
                     {c: t.dtypes[c] for c in order_cols if c in t.dtypes}, t.ordered)

    def op_getschema(self: Compiler, op: N.GetSchema, t: Table) -> Table:
        names = list(t.schema)
        df = pl.DataFrame({
            "ColumnName": names,
            "ColumnOrdinal": pl.Series(range(len(names)), dtype=pl.Int64),
            "DataType": [_NET_TYPES[t.schema[c]] for c in names],
            "ColumnType": [t.schema[c] for c in names],
        })
        return _frame_table(df.lazy(), {"ColumnName": "string", "ColumnOrdinal": "long",
                                        "DataType": "string", "ColumnType": "string"})

    def op_makeseries(self: Compiler, op: N.MakeSeries, t: Table) -> Table:
        # Long because: axis and bins, keys, aggregates with defaults, the full grid and
        # the arrays are one plan whose names and bin count every step shares
        from psanalytics.query.kql.functions import AGGREGATES
        from psanalytics.query.kql.naming import aggregate_name, column_name
        axis = self.scalar(op.on, t)
        axis_name = column_name(op.on)
        if axis_name is None:
            raise self.sem("make-series 'on' takes a column", op.on, cls=KqlUnsupported)
        if axis.ktype not in ("datetime", "timespan", "long", "real"):
            raise self.sem(f"make-series axis must be a datetime or number, not {axis.ktype}",
                           op.on)
        step = self.const_val(op.step, "the make-series step")
        is_time = axis.ktype in ("datetime", "timespan")
        if is_time and step.ktype != "timespan":
            raise self.sem("a datetime axis needs a timespan step", op.step)
        if step.const is None or step.const <= 0:
            raise self.sem("the make-series step must be positive", op.step)
        ax = axis.expr.cast(pl.Int64) if is_time else axis.expr.cast(pl.Float64)
        stepv = int(step.const) if is_time else float(step.const)
        if op.start is not None:
            start = self.const_val(op.start, "the make-series start").const
        else:
            start = None
        if op.stop is not None:
            stop = self.const_val(op.stop, "the make-series end").const
        else:
            stop = None
        if start is None or stop is None:
            mm = t.lf.select(ax.min().alias("lo"), ax.max().alias("hi")).collect()
            lo, hi = mm.row(0)
            if start is None:
                start = lo
            if stop is None:
                stop = None if hi is None else hi + stepv
        if start is None or stop is None:
            nb = 0
        elif is_time:
            nb = max(0, -(-(int(stop) - int(start)) // stepv))
        else:
            nb = max(0, math.ceil((stop - start) / stepv - 1e-12))
        # keys
        keys = []
        kschema: dict[str, str] = {}
        for it in op.by:
            kv = self.scalar(it.expr, t)
            kn = it.name or column_name(it.expr)
            if kn is None:
                raise self.sem("make-series: name this key (Name = expr)", it.expr)
            keys.append(self.materialize(kv).alias(kn))
            kschema[kn] = kv.ktype
        bin_e = ((ax - start) // stepv).cast(pl.Int64) if is_time else \
            ((ax - start) / stepv).floor().cast(pl.Int64)
        base = t.lf.with_columns(*keys, bin_e.alias("__bin")).filter(
            (pl.col("__bin") >= 0) & (pl.col("__bin") < nb))
        aggs = []
        names = []
        defaults = []
        akinds = []
        for a, default in op.aggs:
            e = a.expr
            v = self.scalar(e, Table(base, {**t.schema, **kschema}, {}), agg_ctx=True,
                            grouped=True)
            if not v.agg and not v.is_const:
                raise self.sem("make-series needs an aggregate such as count() or avg(x)", e)
            name = a.name
            if name is None:
                name = aggregate_name(e) if isinstance(e, N.Call) and e.name in AGGREGATES \
                    else "Column1"
            dv = None
            if default is not None:
                dv = self.const_val(default, "the default").const
            else:
                dv = 0
            aggs.append(v.expr.alias(name))
            names.append(name)
            defaults.append(dv)
            akinds.append(v.ktype)
        kn = list(kschema)
        grouped = base.group_by([*kn, "__bin"]).agg(aggs)
        bins = pl.LazyFrame({"__bin": pl.int_range(0, nb, eager=True, dtype=pl.Int64)})
        if kn:
            # the groups from the aggregated rows (every group of the input has one), not
            # a second pass over the input; their order is the final sort's
            groups = grouped.select(kn).unique()
            frame = groups.join(bins, how="cross")
        elif op.kind == "nonempty":  # one series of defaults even without any input row
            frame = bins
        else:  # no input row, no series (Kusto returns no row)
            # (with_columns: a literal broadcasts to the frame's height, 0 rows included)
            frame = base.with_columns(pl.lit(1).alias("__g")).select("__g").head(1) \
                .join(bins, how="cross").drop("__g")
        full = frame.join(grouped, on=[*kn, "__bin"], how="left", nulls_equal=True)
        fills = []
        for n, dv, k in zip(names, defaults, akinds, strict=True):
            if dv is None:
                continue
            fills.append(pl.col(n).fill_null(pl.lit(dv).cast(_DTYPES.get(k, pl.Float64))))
        if fills:
            full = full.with_columns(fills)
        if is_time:
            axis_vals = (pl.col("__bin") * stepv + int(start)).cast(
                TIME_DTYPE if axis.ktype == "datetime" else SPAN_DTYPE)
        else:
            axis_vals = pl.col("__bin").cast(pl.Float64) * stepv + float(start)
        full = full.with_columns(axis_vals.alias(axis_name)).sort([*kn, "__bin"])
        if kn:
            out = full.group_by(kn, maintain_order=True).agg([*names, axis_name])
        else:  # one series, or none when no row was in the input
            out = full.with_columns(pl.lit(1).alias("__g")).group_by("__g") \
                .agg([*names, axis_name]).drop("__g")
        out = out.select([*kn, *names, axis_name])
        schema = {**kschema, **{n: "dynamic" for n in names}, axis_name: "dynamic"}
        return Table(out, schema, {}, False)



_ = (DAY_NS, KqlSemanticError)
