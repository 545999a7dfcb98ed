"""Scalar expressions: a KQL expression node -> a :class:`Val` (Polars expression plus KQL
type). A mixin of :class:`~psanalytics.query.kql.compiler.Compiler` (``self`` is the
compiler: its scope, lets and tables); function calls dispatch to the ``functions``
registries, operators on values (arithmetic, comparisons, string operators, ``in``,
``between``) are here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported, suggest
from psanalytics.query.kql.functions import (
    AGG_IMPLS,
    AGGREGATES,
    FUNC_IMPLS,
    SCALAR_FUNCTIONS,
    UNSUPPORTED_FUNCTIONS,
)
from psanalytics.query.kql.op_mvfields import member_chain
from psanalytics.query.kql.types import (
    _DTYPES,
    DYNAMIC_TEXT_COLUMNS,
    NUMERIC,
    ORDERED,
    SPAN_DTYPE,
    Table,
    Val,
    _json_path,
    _lit,
    _rust_escape,
    map_distinct,
)


class ExprCompiler:
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
                or (self.scope.agg and not self.scope.pre_agg) or not base.meta.is_column()):
            return base.str.json_path_match(jp)
        self.used_dedupe_json = True
        read = base.map_batches(
            lambda s: map_distinct(s, lambda d: d.str.json_path_match(jp)),
            return_dtype=pl.String)
        if not self.scope.pre_agg:
            return read
        # in summarize's aggregate list (arg_max's arguments too): read before the
        # group_by, into a hidden column of summarize's input (a path is a row's own value,
        # so it is the same), never once per group
        name = f"{self.pre_agg_prefix}{len(self.pre_agg)}"
        self.pre_agg.append(read.alias(name))
        return pl.col(name)

    def as_bool(self, v: Val, node: N.Expr, msg: str) -> pl.Expr:
        if v.ktype == "bool":
            return v.expr
        if v.ktype == "dynamic" and not v.is_list:
            return self.dyn_text(v) == "true"
        raise self.sem(f"{msg}, but this expression is {v.ktype}", node)

    def materialize(self, v: Val) -> pl.Expr:
        """Expression for an output column."""
        if v.ktype == "dynamic" and v.json_base is not None and v.json_path:
            return self.dyn_text(v)
        return v.expr

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
        if v.path_col is not None:
            return pl.col(v.path_col)
        if v.json_base is not None and v.json_path:
            return self.json_path(v.json_base, v.json_path)
        if v.struct_fields is not None:
            return v.expr.struct.json_encode()
        if v.json_any:
            # a column holds JSON text, or a string value in its text form (unquoted, as a
            # path read it: `extend n = Payload.p.name`), which is not JSON: that is the
            # text itself (it read as null, so tostring(n) was "")
            parsed = v.expr.str.json_path_match("$")
            return pl.when(parsed.is_null() & (v.expr != "null")).then(v.expr) \
                .otherwise(parsed)
        return v.expr

    def member(self, base: Val, key: str | int, node: N.Expr) -> Val:
        if base.ktype != "dynamic":
            raise self.sem(f"'.{key}' needs a dynamic value, but this is {base.ktype}", node)
        if base.is_list:
            if not isinstance(key, int):
                return _lit(None, "dynamic")  # a key of an array: null, as in Kusto
            if key < 0:
                raise self.sem("negative array indexes are not supported by the local engine",
                               node, cls=KqlUnsupported)
            # read as a JSON path into the array's JSON text (out of range: null)
            text = pl.struct(base.expr.alias("v")).struct.json_encode() \
                .str.strip_prefix('{"v":').str.strip_suffix("}")
            return Val(text.str.json_path_match(_json_path((key,))), "dynamic", True,
                       json_base=text, json_path=(key,), agg=base.agg)
        if base.struct_fields is not None:
            if isinstance(key, str) and key in base.struct_fields:
                return Val(base.expr.struct.field(key), "dynamic", True)
            return _lit(None, "dynamic")
        if isinstance(key, int) and key < 0:
            raise self.sem("negative array indexes are not supported by the local engine",
                           node, cls=KqlUnsupported)
        if base.json_base is not None and base.path_col is None:
            path = (*base.json_path, key)
            return Val(self.json_path(base.json_base, path), "dynamic", True,
                       json_base=base.json_base, json_path=path)
        text = self.dyn_text(base)
        return Val(text.str.json_path_match(_json_path((key,))), "dynamic", True,
                   json_base=text, json_path=(key,))

    def x_member(self, e: N.Member, t: Table) -> Val:
        field = self.mv_field(e, t)
        if field is not None:
            return field
        return self.member(self.expr(e.obj, t), e.key, e)

    def mv_field(self, e: N.Member | N.Index, t: Table) -> Val | None:
        """``line.qty`` or ``Payload.product.name`` where an earlier step read that path
        of every row into a hidden column (:mod:`.op_mvfields`): that column, else None."""
        if self.path_cols is None:
            return None
        chain = member_chain(e)
        if chain is None or chain[0] in self.params:
            return None
        hidden = self.path_cols.get(chain[0], {}).get(chain[1])
        if hidden is None:
            return None
        root: N.Expr = e
        while isinstance(root, (N.Member, N.Index)):
            root = root.obj
        base = self.expr(root, t)  # the checks of a column reference (aggregate context)
        if base.json_base is None or base.json_path:
            return None
        return Val(pl.col(hidden), "dynamic", True, json_base=base.json_base,
                   json_path=chain[1], path_col=hidden)

    def x_index(self, e: N.Index, t: Table) -> Val:
        field = self.mv_field(e, t)
        if field is not None:
            return field
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
        neg = e.op.startswith("!")
        base = e.op.lstrip("!")
        values, kinds = self._inlist_values(e, t)
        if base in ("has_any", "has_all"):
            a = self.stringish(left, e.left)
            return Val(_has_words([str(v) for v in values if v is not None],
                                  a, every=base == "has_all"), "bool", False)
        x, series = self._inlist_operands(e, left, values, kinds, ci=base == "in~")
        r = x.is_in(series.implode()).fill_null(False)
        return Val(~r if neg else r, "bool", False, agg=left.agg)

    def _inlist_values(self, e: N.InList, t: Table) -> tuple[list[Any], set[str]]:
        """The right side's values (literals, scalar lets, arrays, a subquery's column)."""
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
                raise self.sem(f"'{e.op}' needs literal values or scalar lets locally", it,
                               cls=KqlUnsupported)
            if isinstance(v.const, list):
                values.extend(v.const)
                kinds.update("string" if isinstance(x, str) else "real" for x in v.const)
            else:
                values.append(v.const)
                kinds.add(v.ktype)
        return values, kinds

    def _inlist_operands(self, e: N.InList, left: Val, values: list[Any], kinds: set[str],
                         *, ci: bool) -> tuple[pl.Expr, pl.Series]:
        """The left side and the values as one comparable dtype (an error names a value of
        another kind)."""
        op, lk = e.op, left.ktype
        vals = [v for v in values if v is not None]
        if lk == "dynamic":
            if left.is_list:
                raise self.sem(f"'{op}' on a dynamic array is not supported locally", e.left,
                               cls=KqlUnsupported)
            x = self.dyn_text(left)
            if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                            for v in vals):
                return x.cast(pl.Float64, strict=False), pl.Series([float(v) for v in vals],
                                                                   dtype=pl.Float64)
            texts = [("true" if v else "false") if isinstance(v, bool) else str(v)
                     for v in vals]
            if ci:
                return x.str.to_lowercase(), pl.Series([s.lower() for s in texts],
                                                       dtype=pl.String)
            return x, pl.Series(texts, dtype=pl.String)
        if lk == "string":
            if any(not isinstance(v, str) for v in vals):
                raise self.sem(f"'{op}' compares a string with a non-string value", e)
            if ci:
                return left.expr.str.to_lowercase(), pl.Series([v.lower() for v in vals],
                                                               dtype=pl.String)
            return left.expr, pl.Series(vals, dtype=pl.String)
        if lk in NUMERIC:
            if any(isinstance(v, (str, bool)) for v in vals):
                raise self.sem(f"'{op}' compares a number with a non-number value", e)
            if lk == "long" and all(isinstance(v, int) for v in vals):
                return left.expr, pl.Series(vals, dtype=pl.Int64)
            return left.expr.cast(pl.Float64), pl.Series(vals, dtype=pl.Float64)
        if lk in ("datetime", "timespan"):
            if kinds - {lk} or any(not isinstance(v, int) or isinstance(v, bool)
                                   for v in vals):
                raise self.sem(f"'{op}' compares a {lk} with other kinds of values", e)
            return left.expr, pl.Series(vals, dtype=pl.Int64).cast(_DTYPES[lk])
        if lk == "bool":
            if any(not isinstance(v, bool) for v in vals):
                raise self.sem(f"'{op}' compares a bool with non-bool values", e)
            return left.expr, pl.Series(vals, dtype=pl.Boolean)
        raise self.sem(f"'{op}' is not supported for {lk} values", e)

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


def _has_words(needles: list[str], a: pl.Expr, *, every: bool) -> pl.Expr:
    """``has_any``/``has_all``: each needle as a whole term, case-insensitively."""
    if not needles:
        return pl.lit(every)
    edge, end = "(?i)(?:^|[^A-Za-z0-9])", "(?:[^A-Za-z0-9]|$)"
    if not every:
        return a.str.contains(edge + "(?:" + "|".join(_rust_escape(n) for n in needles)
                              + ")" + end).fill_null(False)
    r = a.str.contains(edge + _rust_escape(needles[0]) + end)
    for n in needles[1:]:
        r = r & a.str.contains(edge + _rust_escape(n) + end)
    return r.fill_null(False)
