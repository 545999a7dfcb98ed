"""Operator parsing: one method per tabular operator, found through a dispatch table
(:data:`OPERATOR_PARSERS`), plus the clauses only operators use (options, column
patterns, renames, render properties, top-nested levels)."""

from __future__ import annotations

from collections.abc import Callable

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlSyntaxError, KqlUnsupported, suggest
from psanalytics.query.kql.parse_exprs import MAX_DEPTH, ExprParser

#: Valid KQL operators the local engine does not run (KqlUnsupported).
UNSUPPORTED_OPERATORS = (
    "parse-kv", "top-hitters", "evaluate",
    "search", "invoke", "fork", "facet",
    "partition", "scan", "find", "consume", "reduce", "extend-rows",
    "range", "print", "datatable", "externaldata", "materialize", "toscalar",
)
JOIN_KINDS = ("innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftanti",
              "rightanti", "leftsemi", "rightsemi", "anti", "leftantisemi",
              "rightantisemi", "semi")


class OperatorParser(ExprParser):
    def parse_operator(self) -> N.Op:
        t = self.tok
        if t.kind != "IDENT" or t.quoted:
            self.error(f"expected an operator after '|' but found {self.describe(t)}")
        name = t.value
        if name not in ALL_OPERATORS:
            sug = suggest(name, ALL_OPERATORS)
            if name.lower() in ALL_OPERATORS:
                msg = (f"unknown operator '{name}': operator names are lower-case "
                       f"(write '{name.lower()}')")
            else:
                msg = f"unknown operator '{name}'"
            self.error(msg, t, suggestion=sug)
        if name == "evaluate":
            self.error("'evaluate' (plugins) is out of scope for the local engine", t,
                       cls=KqlUnsupported)
        if name in UNSUPPORTED_OPERATORS:
            self.error(f"the '{name}' operator is not supported by the local engine", t,
                       cls=KqlUnsupported)
        self.advance()
        op = OPERATOR_PARSERS[name](self, name)
        op.span = (t.start, self.toks[self.i - 1].end)  # type: ignore[attr-defined]
        return op

    def _op_where(self, name: str) -> N.Op:
        pred = self.parse_expr()
        op = N.Where(pred, keyword=name)
        return op

    def _op_project(self, name: str) -> N.Op:
        op = N.Project(self.parse_assign_list("project"))
        return op

    def _op_project_away(self, name: str) -> N.Op:
        names = [self.parse_column_pattern()]
        while self.is_op(","):
            self.advance()
            names.append(self.parse_column_pattern())
        op = N.ProjectAway(names, keep=name == "project-keep")
        return op

    def _op_project_rename(self, name: str) -> N.Op:
        pairs = [self.parse_rename()]
        while self.is_op(","):
            self.advance()
            pairs.append(self.parse_rename())
        op = N.ProjectRename(pairs)
        return op

    def _op_extend(self, name: str) -> N.Op:
        op = N.Extend(self.parse_assign_list("extend"))
        return op

    def _op_summarize(self, name: str) -> N.Op:
        self.skip_hints()
        aggs: list[N.Assign] = []
        if not self.is_word("by"):
            aggs = self.parse_assign_list("summarize")
        by: list[N.Assign] = []
        if self.is_word("by"):
            self.advance()
            by = self.parse_assign_list("summarize ... by")
        if not aggs and not by:
            self.error("'summarize' needs at least one aggregate or a 'by' clause")
        op = N.Summarize(aggs, by)
        return op

    def _op_count(self, name: str) -> N.Op:
        op = N.Count()
        return op

    def _op_distinct(self, name: str) -> N.Op:
        self.skip_hints()
        if self.is_op("*"):
            self.advance()
            op = N.Distinct(None)
        else:
            items = [self.parse_expr()]
            while self.is_op(","):
                self.advance()
                items.append(self.parse_expr())
            op = N.Distinct(items)
        return op

    def _op_take(self, name: str) -> N.Op:
        self.skip_hints()
        op = N.Take(self.parse_expr(), keyword=name)
        return op

    def _op_top(self, name: str) -> N.Op:
        self.skip_hints()
        count = self.parse_expr()
        if not self.is_word("by"):
            self.error(f"expected 'by' after 'top {self.text[count.span[0]:count.span[1]]}'"
                       f" but found {self.describe(self.tok)}")
        self.advance()
        key = self.parse_sort_key()
        if self.is_op(","):
            self.error("'top' takes a single sort key locally; use 'sort by ... | take N'",
                       cls=KqlUnsupported)
        op = N.Top(count, key)
        return op

    def _op_sort(self, name: str) -> N.Op:
        self.skip_hints()
        if not self.is_word("by"):
            self.error(f"expected 'by' after '{name}' but found {self.describe(self.tok)}")
        self.advance()
        keys = [self.parse_sort_key()]
        while self.is_op(","):
            self.advance()
            keys.append(self.parse_sort_key())
        op = N.Sort(keys, keyword=name)
        return op

    def _op_render(self, name: str) -> N.Op:
        kt = self.ident("a chart kind after 'render'")
        props: list[tuple[str, N.Expr]] = []
        if self.is_word("with"):
            self.advance()
            self.expect_op("(", " after 'with'")
            while not self.is_op(")"):
                pk = self.ident("a render property name")
                self.expect_op("=", f" after '{pk.value}'")
                props.append((pk.value, self.parse_render_value()))
                if self.is_op(","):
                    self.advance()
                elif not self.is_op(")"):
                    self.error(f"expected ',' or ')' but found {self.describe(self.tok)}")
            self.advance()
        op = N.Render(kt.value, props)
        return op

    def _op_join(self, name: str) -> N.Op:
        opts = self.parse_options(("kind",))
        kind = opts.get("kind")
        if kind is not None:
            allowed = JOIN_KINDS if name == "join" else ("leftouter", "inner")
            if kind not in allowed:
                self.error(f"unknown {name} kind '{kind}'",
                           suggestion=suggest(kind, allowed))
        right = self.parse_pipeline_term()
        if not self.is_word("on"):
            self.error(f"expected 'on' after the right side of '{name}' but found "
                       f"{self.describe(self.tok)}")
        self.advance()
        on = [self.parse_expr()]
        while self.is_op(","):
            self.advance()
            on.append(self.parse_expr())
        op = N.Join(kind, right, on, keyword=name)
        return op

    def _op_union(self, name: str) -> N.Op:
        op = self.parse_union_body()
        return op

    def _op_as(self, name: str) -> N.Op:
        self.parse_options(())
        op = N.As(self.ident("a name after 'as'").value)
        return op

    def _op_mv_expand(self, name: str) -> N.Op:
        opts = self.parse_options(("kind", "bagexpansion", "with_itemindex"))
        kind = opts.get("kind") or opts.get("bagexpansion")
        if kind is not None and kind not in ("bag", "array"):
            self.error(f"mv-expand kind must be bag or array, not '{kind}'")
        mitems, limit = self._mv_items("mv-expand")
        op = N.MvExpand(mitems, kind, opts.get("with_itemindex"), limit)
        return op

    def _mv_items(self, opname: str
                  ) -> tuple[list[tuple[str | None, N.Expr, str | None]], N.Expr | None]:
        """``[Name =] expr [to typeof(T)], ... [limit N]`` (mv-expand and mv-apply)."""
        mitems: list[tuple[str | None, N.Expr, str | None]] = []
        while True:
            a = self.parse_assign(opname)
            totype = None
            if self.is_word("to"):
                self.advance()
                if not self.is_word("typeof"):
                    self.error(f"expected 'typeof' after 'to' but found "
                               f"{self.describe(self.tok)}")
                self.advance()
                self.expect_op("(", " after 'typeof'")
                totype = self.parse_type_name()
                self.expect_op(")", " to close 'typeof('")
            mitems.append((a.name, a.expr, totype))
            if not self.is_op(","):
                break
            self.advance()
        limit = None
        if self.is_word("limit"):
            self.advance()
            limit = self.parse_expr()
        return mitems, limit

    def _op_mv_apply(self, name: str) -> N.Op:
        opts = self.parse_options(("with_itemindex",))
        mitems, limit = self._mv_items("mv-apply")
        if not self.is_word("on"):
            self.error(f"expected 'on' and a parenthesized subquery after the mv-apply "
                       f"columns but found {self.describe(self.tok)}")
        self.advance()
        open_tok = self.expect_op("(", " after 'on' (the mv-apply subquery)")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.error("tabular expression nested too deeply", open_tok)
        try:
            ops = [self.parse_operator()]
            while self.is_op("|"):
                self.advance()
                ops.append(self.parse_operator())
        finally:
            self.depth -= 1
        self.expect_op(")", " to close the mv-apply subquery")
        for sub in ops:
            if isinstance(sub, N.Render):
                raise KqlSyntaxError("'render' is not allowed inside mv-apply",
                                     query=self.text, span=sub.span)
        return N.MvApply(mitems, opts.get("with_itemindex"), limit, ops)

    def _op_parse(self, name: str) -> N.Op:
        opts = self.parse_options(("kind", "flags"))
        src = self.parse_expr()
        if not self.is_word("with"):
            self.error(f"expected 'with' after the parse source but found "
                       f"{self.describe(self.tok)}")
        self.advance()
        parts: list[str | tuple[str, str | None]] = []
        while True:
            if self.tok.kind == "STRING":
                parts.append(self.advance().value)
            elif self.is_op("*"):
                self.advance()
                parts.append(("*", None))
            elif self.tok.kind == "IDENT" and self.tok.value not in ("and", "or"):
                cn = self.advance()
                ct = None
                if self.is_op(":"):
                    self.advance()
                    ct = self.parse_type_name()
                parts.append((cn.value, ct))
            else:
                break
        if not parts:
            self.error(f"expected the parse pattern but found {self.describe(self.tok)}")
        kind = opts.get("kind")
        if kind is not None and kind not in ("simple", "regex", "relaxed"):
            self.error(f"parse kind must be simple, regex or relaxed, not '{kind}'")
        op = N.Parse(src, parts, kind, opts.get("flags"), where=name == "parse-where")
        return op

    def _op_make_series(self, name: str) -> N.Op:
        kind = self.parse_options(("kind",)).get("kind")
        if kind is not None and kind != "nonempty":
            self.error(f"make-series kind must be nonempty, not '{kind}'",
                       self.toks[self.i - 1])
        maggs: list[tuple[N.Assign, N.Expr | None]] = []
        while True:
            a = self.parse_assign("make-series")
            default = None
            if self.is_word("default"):
                self.advance()
                self.expect_op("=", " after 'default'")
                default = self.parse_expr()
            maggs.append((a, default))
            if not self.is_op(","):
                break
            self.advance()
        if not self.is_word("on"):
            self.error(f"expected 'on' in make-series but found {self.describe(self.tok)}")
        self.advance()
        axis = self.parse_expr()
        mstart = mstop = None
        if self.is_word("in"):
            self.error("'in range(...)' in make-series is not supported locally; use "
                       "from/to/step", cls=KqlUnsupported)
        if self.is_word("from"):
            self.advance()
            mstart = self.parse_expr()
        if self.is_word("to"):
            self.advance()
            mstop = self.parse_expr()
        if not self.is_word("step"):
            self.error(f"expected 'step' in make-series but found "
                       f"{self.describe(self.tok)}")
        self.advance()
        step = self.parse_expr()
        mby: list[N.Assign] = []
        if self.is_word("by"):
            self.advance()
            mby = self.parse_assign_list("make-series ... by")
        op = N.MakeSeries(maggs, axis, mstart, mstop, step, mby, kind)
        return op

    def _op_serialize(self, name: str) -> N.Op:
        sitems: list[N.Assign] = []
        if not (self.is_op("|") or self.tok.kind == "EOF" or self.is_op(")")
                or self.is_op(";")):
            sitems = self.parse_assign_list("serialize")
        op = N.Serialize(sitems)
        return op

    def _op_sample(self, name: str) -> N.Op:
        op = N.Sample(self.parse_expr())
        return op

    def _op_sample_distinct(self, name: str) -> N.Op:
        cnt = self.parse_expr()
        if not self.is_word("of"):
            self.error(f"expected 'of' in sample-distinct but found "
                       f"{self.describe(self.tok)}")
        self.advance()
        op = N.SampleDistinct(cnt, self.parse_expr())
        return op

    def _op_project_reorder(self, name: str) -> N.Op:
        rnames: list[tuple[N.Name, str | None]] = []
        while True:
            pat = self.parse_column_pattern()
            order = None
            if self.tok.kind == "IDENT" and self.tok.value in (
                    "asc", "desc", "granny-asc", "granny-desc"):
                order = self.advance().value
            rnames.append((pat, order))
            if not self.is_op(","):
                break
            self.advance()
        op = N.ProjectReorder(rnames)
        return op

    def _op_getschema(self, name: str) -> N.Op:
        op = N.GetSchema()
        return op

    def _op_top_nested(self, name: str) -> N.Op:
        levels = [self.parse_top_nested_level()]
        while self.is_op(",") and self.peek().kind == "IDENT" and \
                self.peek().value == "top-nested":
            self.advance()
            self.advance()
            levels.append(self.parse_top_nested_level())
        op = N.TopNested(levels)
        return op

    def parse_options(self, allowed: tuple[str, ...]) -> dict[str, str]:
        opts: dict[str, str] = {}
        while self.tok.kind == "IDENT" and not self.tok.quoted and (
                (self.peek().kind == "OP" and self.peek().value == "="
                 and self.tok.value in allowed)
                or (self.tok.value.startswith("hint") and self.peek().kind == "OP"
                    and self.peek().value == ".")):
            ot = self.tok
            name = self.advance().value
            while self.is_op("."):
                self.advance()
                name += "." + self.ident("an option name").value
            self.expect_op("=", f" after '{name}'")
            v = self.tok
            if v.kind in ("IDENT", "STRING", "LONG"):
                self.advance()
            else:
                self.error(f"expected a value for '{name}' but found {self.describe(v)}")
            if name.startswith("hint."):
                continue  # hints change how, not what
            if name not in allowed:
                self.error(f"unknown option '{name}'", ot, suggestion=suggest(name, allowed))
            opts[name] = str(v.value)
        return opts

    # ------------------------------------------------------------------ operators
    def parse_top_nested_level(self) -> tuple:
        count = None
        if not self.is_word("of"):
            count = self.parse_expr()
        if not self.is_word("of"):
            self.error(f"expected 'of' in top-nested but found {self.describe(self.tok)}")
        self.advance()
        a = self.parse_assign("top-nested")
        others = None
        if self.is_word("with"):
            self.advance()
            if not self.is_word("others"):
                self.error(f"expected 'others' after 'with' but found "
                           f"{self.describe(self.tok)}")
            self.advance()
            self.expect_op("=", " after 'others'")
            others = self.parse_expr()
        if not self.is_word("by"):
            self.error(f"expected 'by' in top-nested but found {self.describe(self.tok)}")
        self.advance()
        b = self.parse_assign("top-nested ... by")
        asc = False
        if self.is_word("asc") or self.is_word("desc"):
            asc = self.advance().value == "asc"
        return (count, a.name, a.expr, others, b.name, b.expr, asc)

    def parse_render_value(self) -> N.Expr:
        if self.tok.kind == "IDENT" and not self.tok.quoted and self.tok.value not in (
                "true", "false", "dynamic"):
            t = self.advance()
            # bare words (kind=stacked, ycolumns=a, b is not supported) -> string value
            return N.Literal(t.value, "string", span=(t.start, t.end))
        return self.parse_expr()

    def skip_hints(self) -> None:
        while self.tok.kind == "IDENT" and self.tok.value.startswith("hint") and \
                self.peek().kind == "OP" and self.peek().value == ".":
            self.error("query hints are not supported by the local engine",
                       cls=KqlUnsupported)
        if self.is_word("kind") and self.peek().kind == "OP" and self.peek().value == "=":
            self.error("'kind=' options are not supported by the local engine",
                       cls=KqlUnsupported)

    def parse_column_pattern(self) -> N.Name:
        t = self.tok
        if t.kind == "IDENT":
            self.advance()
            name = t.value
            end = t.end
            # wildcard: Name* or Na*me
            while self.is_op("*") and not self.tok.spaced:
                name += "*"
                end = self.advance().end
                if self.tok.kind == "IDENT" and not self.tok.spaced and not self.tok.quoted:
                    n2 = self.advance()
                    name += n2.value
                    end = n2.end
            return N.Name(name, span=(t.start, end))
        if self.is_op("*"):
            self.advance()
            name = "*"
            end = t.end
            if self.tok.kind == "IDENT" and not self.tok.spaced:
                n2 = self.advance()
                name += n2.value
                end = n2.end
            return N.Name(name, span=(t.start, end))
        self.error(f"expected a column name but found {self.describe(t)}")

    def parse_rename(self) -> tuple[str, N.Name]:
        new = self.ident("a new column name")
        self.expect_op("=", " in 'project-rename New = Old'")
        old = self.ident("an existing column name")
        return new.value, N.Name(old.value, span=(old.start, old.end))



#: operator name -> the method that parses what follows it (the name is consumed)
OPERATOR_PARSERS: dict[str, Callable[[OperatorParser, str], N.Op]] = {
    "where": OperatorParser._op_where,
    "filter": OperatorParser._op_where,
    "project": OperatorParser._op_project,
    "project-away": OperatorParser._op_project_away,
    "project-keep": OperatorParser._op_project_away,
    "project-rename": OperatorParser._op_project_rename,
    "extend": OperatorParser._op_extend,
    "summarize": OperatorParser._op_summarize,
    "count": OperatorParser._op_count,
    "distinct": OperatorParser._op_distinct,
    "take": OperatorParser._op_take,
    "limit": OperatorParser._op_take,
    "top": OperatorParser._op_top,
    "sort": OperatorParser._op_sort,
    "order": OperatorParser._op_sort,
    "render": OperatorParser._op_render,
    "join": OperatorParser._op_join,
    "lookup": OperatorParser._op_join,
    "union": OperatorParser._op_union,
    "as": OperatorParser._op_as,
    "mv-expand": OperatorParser._op_mv_expand,
    "mv-apply": OperatorParser._op_mv_apply,
    "parse": OperatorParser._op_parse,
    "parse-where": OperatorParser._op_parse,
    "make-series": OperatorParser._op_make_series,
    "serialize": OperatorParser._op_serialize,
    "sample": OperatorParser._op_sample,
    "sample-distinct": OperatorParser._op_sample_distinct,
    "project-reorder": OperatorParser._op_project_reorder,
    "getschema": OperatorParser._op_getschema,
    "top-nested": OperatorParser._op_top_nested,
}
#: Tabular operators the local engine runs (the table's keys).
SUPPORTED_OPERATORS = tuple(OPERATOR_PARSERS)
ALL_OPERATORS = SUPPORTED_OPERATORS + UNSUPPORTED_OPERATORS
