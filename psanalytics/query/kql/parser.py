"""KQL parser: tokens -> :class:`~psanalytics.query.kql.nodes.Query` (nodes keep spans)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NoReturn

from psanalytics._time import datetime_to_ns, instant_or_none, parse_timespan
from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import (
    KqlError,
    KqlSyntaxError,
    KqlUnsupported,
    suggest,
)
from psanalytics.query.kql.lexer import Token, tokenize

#: Tabular operators the local engine runs.
SUPPORTED_OPERATORS = (
    "where", "filter", "project", "project-away", "project-keep", "project-rename",
    "extend", "summarize", "count", "distinct", "take", "limit", "top", "sort", "order",
    "render", "join", "lookup", "union", "mv-expand", "parse", "parse-where", "make-series",
    "serialize", "sample", "sample-distinct", "project-reorder", "getschema", "as",
    "top-nested",
)
#: Valid KQL operators the local engine does not run (KqlUnsupported).
UNSUPPORTED_OPERATORS = (
    "mv-apply", "parse-kv", "top-hitters", "evaluate",
    "search", "invoke", "fork", "facet",
    "partition", "scan", "find", "consume", "reduce", "extend-rows",
    "range", "print", "datatable", "externaldata", "materialize", "toscalar",
)
#: Words that start a tabular expression (a table source).
SOURCE_WORDS = ("print", "datatable", "range", "union", "materialize", "view")
JOIN_KINDS = ("innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftanti",
              "rightanti", "leftsemi", "rightsemi", "anti", "leftantisemi",
              "rightantisemi", "semi")
TYPE_NAMES = ("string", "long", "int", "real", "double", "bool", "boolean", "datetime",
              "date", "timespan", "time", "dynamic", "decimal", "guid")
ALL_OPERATORS = SUPPORTED_OPERATORS + UNSUPPORTED_OPERATORS

#: Binary string/comparison operators (word forms); each has a ``!`` negation.
STRING_OPS = (
    "has", "has_cs", "hasprefix", "hasprefix_cs", "hassuffix", "hassuffix_cs",
    "contains", "contains_cs", "startswith", "startswith_cs", "endswith", "endswith_cs",
)
LIST_OPS = ("in", "in~", "has_any", "has_all")
_CMP_OPS = ("==", "!=", "=~", "!~", "<", "<=", ">", ">=", "<>")
MAX_DEPTH = 200
#: Nesting limit for scalar expressions (parentheses, calls, operands).
MAX_EXPR_DEPTH = 64


class Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.expr_depth = 0
        #: names of let-defined functions whose body is tabular
        self.tabular_funcs: set[str] = set()

    # ------------------------------------------------------------------ helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if self.i < len(self.toks) - 1:
            self.i += 1
        return t

    def error(self, msg: str, tok: Token | None = None, *, suggestion: str | None = None,
              span: tuple[int, int] | None = None, cls: type[KqlError] = KqlSyntaxError
              ) -> NoReturn:
        t = tok or self.tok
        sp = span or (t.start, max(t.end, t.start + 1))
        raise cls(msg, query=self.text, span=sp, suggestion=suggestion)

    def is_op(self, value: str) -> bool:
        return self.tok.kind == "OP" and self.tok.value == value

    def is_word(self, value: str) -> bool:
        return self.tok.kind == "IDENT" and not self.tok.quoted and self.tok.value == value

    def expect_op(self, value: str, what: str = "") -> Token:
        if not self.is_op(value):
            self.error(f"expected '{value}'{what} but found {self.describe(self.tok)}")
        return self.advance()

    def describe(self, t: Token) -> str:
        if t.kind == "EOF":
            return "the end of the query"
        return f"'{self.text[t.start:t.end]}'"

    def ident(self, what: str = "a name") -> Token:
        if self.tok.kind != "IDENT":
            self.error(f"expected {what} but found {self.describe(self.tok)}")
        return self.advance()

    # ------------------------------------------------------------------ query
    def parse_query(self) -> N.Query:
        lets: list[N.Let] = []
        while True:
            while self.is_op(";"):
                self.advance()
            if self.is_word("let"):
                lets.append(self.parse_let())
                continue
            if self.is_word("set") or self.is_word("declare") or self.is_word("alias"):
                self.error(f"'{self.tok.value}' statements are not supported by the local "
                           "engine", cls=KqlUnsupported)
            break
        if self.tok.kind == "EOF":
            self.error("the query is empty: expected a table name such as 'Events'")
        body = self.parse_pipeline()
        while self.is_op(";"):
            self.advance()
        if self.tok.kind != "EOF":
            if self.is_word("let"):
                self.error("'let' statements must come before the query")
            if self.toks[self.i - 1].kind == "OP" and self.toks[self.i - 1].value == ";":
                self.error("several queries separated by ';' (several result tables) are "
                           "not supported by the local engine: run them one at a time",
                           cls=KqlUnsupported)
            self.error(f"unexpected {self.describe(self.tok)} after the end of the query"
                       " (expected '|' or the end)")
        return N.Query(lets, body, span=(0, len(self.text)))

    def parse_let(self) -> N.Let:
        start = self.advance().start  # let
        name_tok = self.ident("a name after 'let'")
        self.expect_op("=", " after the let name")
        value: N.Expr | N.Pipeline | N.FuncDef
        if self.is_op("(") and self._looks_like_function():
            value = self.parse_funcdef(view=False)
            if isinstance(value.body, N.Pipeline):
                self.tabular_funcs.add(name_tok.value)
        elif self.is_word("view") and self.peek().kind == "OP" and self.peek().value == "(":
            self.advance()
            value = self.parse_funcdef(view=True)
            self.tabular_funcs.add(name_tok.value)
        elif self._starts_tabular(self.i):
            # `let T = Events | ...;`, `let T = (Events | ...);`, `let T = (Events) | ...;`
            value = self.parse_pipeline()
        else:
            value = self.parse_expr()
            if isinstance(value, N.Name) and (self.is_op(";") or self.tok.kind == "EOF"):
                # `let T = Events;` is a tabular alias; resolved by the compiler
                value = N.Pipeline(N.TableRef(value.name, value.span), [], span=value.span)
        end = self.tok.end
        if not self.is_op(";"):
            self.error(f"expected ';' after the let statement but found "
                       f"{self.describe(self.tok)}")
        self.advance()
        return N.Let(name_tok.value, value, span=(start, end),
                     name_span=(name_tok.start, name_tok.end))

    def _starts_tabular(self, j: int) -> bool:
        """The tokens from ``j`` start a tabular expression (a source word, a tabular
        function call, or a name followed by '|')."""
        t = self.toks[j]
        nxt = self.toks[min(j + 1, len(self.toks) - 1)]
        if t.kind == "IDENT" and not t.quoted:
            if t.value in ("print", "union") and not (nxt.kind == "OP" and nxt.value in "=("):
                return True
            if t.value in ("datatable", "materialize") and nxt.kind == "OP" \
                    and nxt.value == "(":
                return True
            if t.value == "range" and nxt.kind == "IDENT":
                return True
            if t.value in self.tabular_funcs and nxt.kind == "OP" and nxt.value == "(":
                return True
        if t.kind == "IDENT" and nxt.kind == "OP" and nxt.value == "(":
            k = self._skip_parens(j + 1)
            return self.toks[k].kind == "OP" and self.toks[k].value == "|"
        if t.kind == "OP" and t.value == "(":
            k = j
            while self.toks[k].kind == "OP" and self.toks[k].value == "(" \
                    and k < len(self.toks) - 1:
                k += 1
            if self.toks[k].kind == "IDENT" and self.toks[k].value in SOURCE_WORDS \
                    and not self.toks[k].quoted and self._starts_tabular(k):
                return True
        return self._tabular_ahead(j)

    def _skip_parens(self, j: int) -> int:
        """Index after the parenthesized group starting at ``j`` (a '(')."""
        depth = 0
        while j < len(self.toks):
            t = self.toks[j]
            if t.kind == "OP" and t.value in "([{":
                depth += 1
            elif t.kind == "OP" and t.value in ")]}":
                depth -= 1
                if depth == 0:
                    return min(j + 1, len(self.toks) - 1)
            elif t.kind == "EOF":
                return j
            j += 1
        return len(self.toks) - 1

    def parse_funcdef(self, view: bool) -> N.FuncDef:
        start = self.tok.start
        self.expect_op("(", " to start the parameter list")
        params: list[N.Param] = []
        while not self.is_op(")"):
            pn = self.ident("a parameter name")
            self.expect_op(":", f" and a type after the parameter '{pn.value}'")
            if self.is_op("("):
                self.advance()
                cols: list[tuple[str, str]] = []
                while not self.is_op(")"):
                    if self.is_op("*"):
                        self.advance()
                    else:
                        cn = self.ident("a column name")
                        self.expect_op(":", " after the column name")
                        cols.append((cn.value, self.parse_type_name()))
                    if self.is_op(","):
                        self.advance()
                    elif not self.is_op(")"):
                        self.error(f"expected ',' or ')' but found {self.describe(self.tok)}")
                self.advance()
                params.append(N.Param(pn.value, "table", None, cols))
            else:
                kt = self.parse_type_name()
                default = None
                if self.is_op("="):
                    self.advance()
                    default = self.parse_expr()
                params.append(N.Param(pn.value, kt, default))
            if self.is_op(","):
                self.advance()
            elif not self.is_op(")"):
                self.error(f"expected ',' or ')' in the parameter list but found "
                           f"{self.describe(self.tok)}")
        self.advance()
        self.expect_op("{", " to start the function body")
        saved = set(self.tabular_funcs)
        lets: list[N.Let] = []
        while True:
            while self.is_op(";"):
                self.advance()
            if self.is_word("let"):
                lets.append(self.parse_let())
                continue
            break
        tab_params = {p.name for p in params if p.ktype == "table"}
        if self._starts_tabular(self.i) or (self.tok.kind == "IDENT"
                                            and self.tok.value in tab_params):
            body: N.Expr | N.Pipeline = self.parse_pipeline()
        else:
            body = self.parse_expr()
            if isinstance(body, N.Name) and (self.is_op("}") or self.is_op(";")):
                body = N.Pipeline(N.TableRef(body.name, body.span), [], span=body.span)
        while self.is_op(";"):
            self.advance()
        self.tabular_funcs = saved
        end = self.expect_op("}", " to close the function body").end
        return N.FuncDef(params, lets, body, view, span=(start, end))

    def parse_type_name(self) -> str:
        t = self.ident("a type name")
        if t.value not in TYPE_NAMES:
            self.error(f"unknown type '{t.value}'", t, suggestion=suggest(t.value, TYPE_NAMES))
        return {"int": "long", "double": "real", "boolean": "bool", "date": "datetime",
                "time": "timespan"}.get(t.value, t.value)

    def _tabular_ahead(self, j: int) -> bool:
        """True when the tokens from ``j`` start a tabular expression that a scalar
        expression cannot be: ``(``* name ``)``* ``|`` (a scalar never contains ``|``)."""
        last = len(self.toks) - 1
        opens = 0
        while self.toks[j].kind == "OP" and self.toks[j].value == "(" and j < last:
            opens += 1
            j += 1
        if self.toks[j].kind != "IDENT" or j >= last:
            return False
        j += 1
        closes = 0
        while (closes < opens and j < last and self.toks[j].kind == "OP"
               and self.toks[j].value == ")"):
            closes += 1
            j += 1
        return self.toks[j].kind == "OP" and self.toks[j].value == "|"

    def _looks_like_function(self) -> bool:
        # `(x:long) { ... }` or `() { ... }`
        j = self.i
        depth = 0
        while j < len(self.toks):
            t = self.toks[j]
            if t.kind == "OP" and t.value == "(":
                depth += 1
            elif t.kind == "OP" and t.value == ")":
                depth -= 1
                if depth == 0:
                    nxt = self.toks[j + 1] if j + 1 < len(self.toks) else t
                    return nxt.kind == "OP" and nxt.value == "{"
            elif t.kind == "EOF":
                return False
            j += 1
        return False

    def parse_pipeline(self) -> N.Pipeline:
        """``Name | op | ...`` or ``(tabular expression) | op | ...``.

        A parenthesized tabular expression is flattened: ``(Events | where X) | take 3``
        gives the same AST as ``Events | where X | take 3`` (piping is composition, so
        the meaning is the same); every operator keeps its own span."""
        t = self.tok
        ops: list[N.Op] = []
        if t.kind == "OP" and t.value == "(":
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.error("tabular expression nested too deeply", t)
            try:
                inner = self.parse_pipeline()
            finally:
                self.depth -= 1
            self.expect_op(")", " to close '(' (a parenthesized tabular expression)")
            source = inner.source
            ops.extend(inner.ops)
        else:
            if t.kind != "IDENT":
                self.error(f"expected a table name such as 'Events' but found "
                           f"{self.describe(t)}")
            source = self.parse_source()
        while self.is_op("|"):
            self.advance()
            ops.append(self.parse_operator())
        for op in ops[:-1]:
            if isinstance(op, N.Render):
                raise KqlSyntaxError("'render' must be the last operator", query=self.text,
                                     span=op.span)
        end = self.toks[self.i - 1].end if self.i else t.end
        return N.Pipeline(source, ops, span=(t.start, end))

    def parse_source(self) -> N.Node:
        t = self.tok
        word = t.value if not t.quoted else None
        nxt = self.peek()
        if word == "print" and not (nxt.kind == "OP" and nxt.value == "("
                                    and self._skip_parens_is_end(self.i + 1)):
            self.advance()
            items: list[N.Assign] = []
            if not (self.is_op("|") or self.is_op(";") or self.is_op(")")
                    or self.tok.kind == "EOF"):
                items = self.parse_assign_list("print")
            return N.PrintSource(items, span=(t.start, self.toks[self.i - 1].end))
        if word == "datatable" and nxt.kind == "OP" and nxt.value == "(":
            self.advance()
            self.advance()
            cols: list[tuple[str, str]] = []
            while not self.is_op(")"):
                cn = self.ident("a column name")
                self.expect_op(":", f" and a type after the column '{cn.value}'")
                cols.append((cn.value, self.parse_type_name()))
                if self.is_op(","):
                    self.advance()
                elif not self.is_op(")"):
                    self.error(f"expected ',' or ')' but found {self.describe(self.tok)}")
            self.advance()
            if not cols:
                self.error("datatable needs at least one column")
            self.expect_op("[", " to start the datatable values")
            values: list[N.Expr] = []
            while not self.is_op("]"):
                values.append(self.parse_expr())
                if self.is_op(","):
                    self.advance()
                elif not self.is_op("]"):
                    self.error(f"expected ',' or ']' in the datatable values but found "
                               f"{self.describe(self.tok)}")
            end = self.advance().end
            return N.DatatableSource(cols, values, span=(t.start, end))
        if word == "range" and nxt.kind == "IDENT":
            self.advance()
            name = self.ident("a column name after 'range'")
            if not self.is_word("from"):
                self.error(f"expected 'from' but found {self.describe(self.tok)}")
            self.advance()
            start = self.parse_expr()
            if not self.is_word("to"):
                self.error(f"expected 'to' but found {self.describe(self.tok)}")
            self.advance()
            stop = self.parse_expr()
            if not self.is_word("step"):
                self.error(f"expected 'step' but found {self.describe(self.tok)}")
            self.advance()
            step = self.parse_expr()
            return N.RangeSource(name.value, start, stop, step,
                                 span=(t.start, step.span[1]))
        if word == "union":
            self.advance()
            u = self.parse_union_body()
            u.span = (t.start, self.toks[self.i - 1].end)
            return N.UnionSource(u, span=u.span)
        if word in ("search", "find", "evaluate", "externaldata", "cluster", "database",
                    "table", "external_table", "materialized_view", "stored_query_result"):
            self.error(f"'{t.value}' is not supported by the local engine",
                       cls=KqlUnsupported)
        self.advance()
        if self.is_op("("):
            self.advance()
            args: list[N.Expr | N.Pipeline] = []
            while not self.is_op(")"):
                if self._starts_tabular(self.i) or word == "materialize":
                    args.append(self.parse_pipeline())
                else:
                    args.append(self.parse_expr())
                if self.is_op(","):
                    self.advance()
                elif not self.is_op(")"):
                    self.error(f"expected ',' or ')' but found {self.describe(self.tok)}")
            end = self.advance().end
            return N.CallSource(t.value, args, span=(t.start, end))
        return N.TableRef(t.value, span=(t.start, t.end))

    def _skip_parens_is_end(self, j: int) -> bool:
        k = self._skip_parens(j)
        return self.toks[k].kind == "EOF"

    def parse_union_body(self) -> N.Union:
        kind = withsource = None
        while self.tok.kind == "IDENT" and self.peek().kind == "OP" and \
                self.peek().value == "=":
            opt = self.advance().value
            self.advance()
            val = self.ident(f"a value for '{opt}'")
            if opt == "kind":
                if val.value not in ("inner", "outer"):
                    self.error(f"union kind must be inner or outer, not '{val.value}'", val)
                kind = val.value
            elif opt == "withsource":
                withsource = val.value
            elif opt == "isfuzzy":
                if val.value not in ("true", "false"):
                    self.error("isfuzzy must be true or false", val)
            else:
                self.error(f"unknown union option '{opt}'", suggestion=suggest(
                    opt, ["kind", "withsource", "isfuzzy"]))
        tables = [self.parse_pipeline_term()]
        while self.is_op(","):
            self.advance()
            tables.append(self.parse_pipeline_term())
        return N.Union(tables, kind, withsource)

    def parse_pipeline_term(self) -> N.Pipeline:
        """A table operand of union/join: a name, a call or a parenthesized pipeline (a bare
        name does not take the following '|')."""
        t = self.tok
        if self.is_op("("):
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.error("tabular expression nested too deeply", t)
            try:
                inner = self.parse_pipeline()
            finally:
                self.depth -= 1
            self.expect_op(")", " to close '('")
            return inner
        if t.kind != "IDENT":
            self.error(f"expected a table but found {self.describe(t)}")
        if "*" in self.text[t.end:t.end + 1]:
            self.error("table name wildcards are not supported by the local engine",
                       cls=KqlUnsupported)
        src = self.parse_source()
        return N.Pipeline(src, [], span=(t.start, self.toks[self.i - 1].end))

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
        start = t.start
        op: N.Op
        if name in ("where", "filter"):
            pred = self.parse_expr()
            op = N.Where(pred, keyword=name)
        elif name == "project":
            op = N.Project(self.parse_assign_list("project"))
        elif name in ("project-away", "project-keep"):
            names = [self.parse_column_pattern()]
            while self.is_op(","):
                self.advance()
                names.append(self.parse_column_pattern())
            op = N.ProjectAway(names, keep=name == "project-keep")
        elif name == "project-rename":
            pairs = [self.parse_rename()]
            while self.is_op(","):
                self.advance()
                pairs.append(self.parse_rename())
            op = N.ProjectRename(pairs)
        elif name == "extend":
            op = N.Extend(self.parse_assign_list("extend"))
        elif name == "summarize":
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
        elif name == "count":
            op = N.Count()
        elif name == "distinct":
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
        elif name in ("take", "limit"):
            self.skip_hints()
            op = N.Take(self.parse_expr(), keyword=name)
        elif name == "top":
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
        elif name in ("sort", "order"):
            self.skip_hints()
            if not self.is_word("by"):
                self.error(f"expected 'by' after '{name}' but found {self.describe(self.tok)}")
            self.advance()
            keys = [self.parse_sort_key()]
            while self.is_op(","):
                self.advance()
                keys.append(self.parse_sort_key())
            op = N.Sort(keys, keyword=name)
        elif name == "render":
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
        elif name in ("join", "lookup"):
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
        elif name == "union":
            op = self.parse_union_body()
        elif name == "as":
            self.parse_options(())
            op = N.As(self.ident("a name after 'as'").value)
        elif name == "mv-expand":
            opts = self.parse_options(("kind", "bagexpansion", "with_itemindex"))
            kind = opts.get("kind") or opts.get("bagexpansion")
            if kind is not None and kind not in ("bag", "array"):
                self.error(f"mv-expand kind must be bag or array, not '{kind}'")
            mitems: list[tuple[str | None, N.Expr, str | None]] = []
            while True:
                a = self.parse_assign("mv-expand")
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
            op = N.MvExpand(mitems, kind, opts.get("with_itemindex"), limit)
        elif name in ("parse", "parse-where"):
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
        elif name == "make-series":
            self.parse_options(("kind",))
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
            op = N.MakeSeries(maggs, axis, mstart, mstop, step, mby)
        elif name == "serialize":
            sitems: list[N.Assign] = []
            if not (self.is_op("|") or self.tok.kind == "EOF" or self.is_op(")")
                    or self.is_op(";")):
                sitems = self.parse_assign_list("serialize")
            op = N.Serialize(sitems)
        elif name == "sample":
            op = N.Sample(self.parse_expr())
        elif name == "sample-distinct":
            cnt = self.parse_expr()
            if not self.is_word("of"):
                self.error(f"expected 'of' in sample-distinct but found "
                           f"{self.describe(self.tok)}")
            self.advance()
            op = N.SampleDistinct(cnt, self.parse_expr())
        elif name == "project-reorder":
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
        elif name == "getschema":
            op = N.GetSchema()
        elif name == "top-nested":
            levels = [self.parse_top_nested_level()]
            while self.is_op(",") and self.peek().kind == "IDENT" and \
                    self.peek().value == "top-nested":
                self.advance()
                self.advance()
                levels.append(self.parse_top_nested_level())
            op = N.TopNested(levels)
        else:  # pragma: no cover - guarded by SUPPORTED_OPERATORS
            self.error(f"the '{name}' operator is not supported by the local engine", t,
                       cls=KqlUnsupported)
        end = self.toks[self.i - 1].end
        op.span = (start, end)  # type: ignore[attr-defined]
        return op

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

    def parse_assign_list(self, where: str) -> list[N.Assign]:
        items = [self.parse_assign(where)]
        while self.is_op(","):
            self.advance()
            items.append(self.parse_assign(where))
        return items

    def parse_assign(self, where: str) -> N.Assign:
        t = self.tok
        if t.kind == "IDENT" and self.peek().kind == "OP" and self.peek().value == "=":
            self.advance()
            self.advance()
            e = self.parse_expr()
            return N.Assign(t.value, e, span=(t.start, e.span[1]))
        if self.is_op("(") and self._tuple_assign():
            self.error("tuple assignment '(a, b) = ...' is not supported by the local engine",
                       cls=KqlUnsupported)
        if self.tok.kind == "EOF" or self.is_op("|"):
            self.error(f"expected an expression after '{where}' but found "
                       f"{self.describe(self.tok)}")
        e = self.parse_expr()
        return N.Assign(None, e, span=e.span)

    def _tuple_assign(self) -> bool:
        j = self.i + 1
        while j < len(self.toks) and self.toks[j].kind in ("IDENT",) or (
                j < len(self.toks) and self.toks[j].kind == "OP" and self.toks[j].value == ","):
            j += 1
        return (j + 1 < len(self.toks) and self.toks[j].kind == "OP" and self.toks[j].value == ")"
                and self.toks[j + 1].kind == "OP" and self.toks[j + 1].value == "=")

    def parse_sort_key(self) -> N.SortKey:
        e = self.parse_expr()
        asc: bool | None = None
        nulls: bool | None = None
        end = e.span[1]
        if self.is_word("asc") or self.is_word("desc"):
            asc = self.tok.value == "asc"
            end = self.advance().end
        if self.is_word("nulls"):
            self.advance()
            if self.is_word("first") or self.is_word("last"):
                nulls = self.tok.value == "first"
                end = self.advance().end
            else:
                self.error(f"expected 'first' or 'last' after 'nulls' but found "
                           f"{self.describe(self.tok)}")
        return N.SortKey(e, asc, nulls, span=(e.span[0], end))

    # ------------------------------------------------------------------ expressions
    def parse_expr(self) -> N.Expr:
        # about ten Python frames per level: a lower bound than MAX_DEPTH keeps this
        # error (and its position) ahead of the interpreter's recursion limit
        self.expr_depth += 1
        if self.expr_depth > MAX_EXPR_DEPTH:
            self.error("expression nested too deeply")
        try:
            return self.parse_or()
        finally:
            self.expr_depth -= 1

    def parse_or(self) -> N.Expr:
        left = self.parse_and()
        while self.is_word("or"):
            t = self.advance()
            right = self.parse_and()
            left = N.Binary("or", left, right, span=(left.span[0], right.span[1]),
                            op_span=(t.start, t.end))
        return left

    def parse_and(self) -> N.Expr:
        left = self.parse_cmp()
        while self.is_word("and"):
            t = self.advance()
            right = self.parse_cmp()
            left = N.Binary("and", left, right, span=(left.span[0], right.span[1]),
                            op_span=(t.start, t.end))
        return left

    def parse_cmp(self) -> N.Expr:
        left = self.parse_add()
        t = self.tok
        if t.kind == "OP" and t.value == "=":
            self.error("'=' is not a comparison in KQL: to compare values use '=='", t,
                       suggestion="==")
        op: str | None = None
        if t.kind == "OP" and t.value in _CMP_OPS:
            op = "!=" if t.value == "<>" else t.value
        elif t.kind == "IDENT" and not t.quoted and (t.value in STRING_OPS or t.value in LIST_OPS
                                                     or t.value in ("between", "matches")):
            op = t.value
        elif t.kind == "BANGOP":
            base = t.value[1:]
            if base in STRING_OPS or base in ("in", "in~", "between"):
                op = t.value
            else:
                self.error(f"unknown operator '{t.value}'", t,
                           suggestion=suggest(t.value, ["!" + s for s in STRING_OPS]
                                              + ["!in", "!in~", "!between"]))
        if op is None:
            return left
        self.advance()
        op_span = (t.start, t.end)
        base = op.lstrip("!")
        if base in LIST_OPS:
            items, end = self.parse_paren_list(op)
            return N.InList(op, left, items, span=(left.span[0], end), op_span=op_span)
        if base == "between":
            self.expect_op("(", " after 'between'")
            low = self.parse_add()
            self.expect_op("..", " in 'between (low .. high)'")
            high = self.parse_add()
            end = self.expect_op(")", " to close 'between ('").end
            return N.Between(op.startswith("!"), left, low, high, span=(left.span[0], end))
        if op == "matches":
            if not self.is_word("regex"):
                self.error(f"expected 'regex' after 'matches' but found "
                           f"{self.describe(self.tok)}")
            self.advance()
            op = "matches regex"
        right = self.parse_add()
        node = N.Binary(op, left, right, span=(left.span[0], right.span[1]), op_span=op_span)
        nt = self.tok
        if (nt.kind == "OP" and nt.value in _CMP_OPS) or (
                nt.kind == "IDENT" and not nt.quoted and nt.value in STRING_OPS):
            self.error(f"comparisons cannot be chained: add parentheses or 'and' before "
                       f"{self.describe(nt)}", nt)
        return node

    def parse_paren_list(self, op: str) -> tuple[list[N.Expr], int]:
        self.expect_op("(", f" after '{op}'")
        if self._starts_tabular(self.i):
            t = self.tok
            p = self.parse_pipeline()
            end = self.expect_op(")", f" to close the '{op}' list").end
            return [N.SubQuery(p, span=(t.start, p.span[1]))], end
        items: list[N.Expr] = []
        if not self.is_op(")"):
            items.append(self.parse_expr())
            while self.is_op(","):
                self.advance()
                items.append(self.parse_expr())
        end = self.expect_op(")", f" to close the '{op}' list").end
        return items, end

    def parse_add(self) -> N.Expr:
        left = self.parse_mul()
        while self.is_op("+") or self.is_op("-"):
            t = self.advance()
            right = self.parse_mul()
            left = N.Binary(t.value, left, right, span=(left.span[0], right.span[1]),
                            op_span=(t.start, t.end))
        return left

    def parse_mul(self) -> N.Expr:
        left = self.parse_unary()
        while self.is_op("*") or self.is_op("/") or self.is_op("%"):
            t = self.advance()
            right = self.parse_unary()
            left = N.Binary(t.value, left, right, span=(left.span[0], right.span[1]),
                            op_span=(t.start, t.end))
        return left

    def parse_unary(self) -> N.Expr:
        if self.is_op("-") or self.is_op("+"):
            t = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.error("expression nested too deeply")
            try:
                operand = self.parse_unary()
            finally:
                self.depth -= 1
            if isinstance(operand, N.Literal) and operand.ktype in ("long", "real", "timespan") \
                    and operand.value is not None and t.value == "-":
                return N.Literal(-operand.value, operand.ktype, span=(t.start, operand.span[1]))
            if t.value == "+":
                return operand
            return N.Unary("-", operand, span=(t.start, operand.span[1]))
        return self.parse_postfix()

    def parse_postfix(self) -> N.Expr:
        e = self.parse_primary()
        while True:
            if self.is_op("."):
                self.advance()
                k = self.tok
                if k.kind != "IDENT" or k.quoted:
                    self.error(f"expected a property name after '.' but found "
                               f"{self.describe(k)}")
                self.advance()
                e = N.Member(e, k.value, False, span=(e.span[0], k.end))
            elif self.tok.kind == "IDENT" and self.tok.quoted:
                k = self.advance()
                e = N.Member(e, k.value, True, span=(e.span[0], k.end))
            elif self.is_op("[") and not self.tok.spaced:
                self.advance()
                idx = self.parse_expr()
                end = self.expect_op("]", " to close the index").end
                if isinstance(idx, N.Literal) and idx.ktype == "string":
                    e = N.Member(e, idx.value, True, span=(e.span[0], end))
                else:
                    e = N.Index(e, idx, span=(e.span[0], end))
            else:
                return e

    def parse_primary(self) -> N.Expr:
        t = self.tok
        if t.kind == "STRING":
            self.advance()
            val = t.value
            end = t.end
            while self.tok.kind == "STRING":
                val += self.tok.value
                end = self.advance().end
            return N.Literal(val, "string", span=(t.start, end))
        if t.kind == "LONG":
            self.advance()
            return N.Literal(t.value, "long", span=(t.start, t.end))
        if t.kind == "REAL":
            self.advance()
            return N.Literal(t.value, "real", span=(t.start, t.end))
        if t.kind == "TIMESPAN":
            self.advance()
            return N.Literal(t.value, "timespan", span=(t.start, t.end))
        if t.kind == "DATETIME_RAW":
            self.advance()
            value = self.datetime_value(t)
            if value is not None and not -(2**63) <= value < 2**63:
                self.error(f"datetime({t.value.strip()}) is outside the range the local engine "
                           "can hold (1677-09-21 .. 2262-04-11, nanosecond resolution)", t,
                           cls=KqlUnsupported)
            return N.Literal(value, "datetime", span=(t.start, t.end))
        if t.kind == "TIMESPAN_RAW":
            self.advance()
            raw = t.value.strip()
            if raw == "null":
                return N.Literal(None, "timespan", span=(t.start, t.end))
            ns = parse_timespan(raw)
            if ns is None:
                self.error(f"invalid timespan literal '{raw}' (expected d.hh:mm:ss[.fffffff],"
                           " a number of days or 'N unit')", t)
            return N.Literal(ns, "timespan", span=(t.start, t.end))
        if t.kind == "OP" and t.value == "(":
            self.advance()
            e = self.parse_expr()
            if self.is_op(","):
                self.error("tuples are not supported here", cls=KqlUnsupported)
            end = self.expect_op(")", " to close '('").end
            # keep the expression, extend its span for error reporting only
            return _with_span(e, (t.start, end))
        if t.kind == "OP" and t.value == "*":
            self.advance()
            return N.Star(span=(t.start, t.end))
        if t.kind == "IDENT":
            if t.quoted:
                self.advance()
                return N.Name(t.value, span=(t.start, t.end))
            if t.value in ("true", "false"):
                self.advance()
                return N.Literal(t.value == "true", "bool", span=(t.start, t.end))
            if self.peek().kind == "OP" and self.peek().value == "(":
                if t.value == "dynamic":
                    return self.parse_dynamic()
                if t.value in ("long", "int", "real", "double", "bool", "boolean", "string",
                               "decimal", "guid"):
                    return self.parse_typed_literal()
                return self.parse_call()
            self.advance()
            return N.Name(t.value, span=(t.start, t.end))
        if t.kind == "BANGOP":
            self.error(f"'{t.value}' must follow a value", t)
        self.error(f"expected an expression but found {self.describe(t)}")

    def datetime_value(self, t: Token) -> int | None:
        raw = t.value.strip()
        if raw == "null":
            return None
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1].strip()  # datetime("2015-01-01")
        ns = instant_or_none(raw, check_range=False)
        if ns is not None:
            return ns
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) >= 3 and all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts) \
                and len(parts) <= 7:
            try:
                nums = [int(float(p)) for p in parts]
                base = datetime(*nums[:6], tzinfo=UTC)  # type: ignore[misc]
                ns = datetime_to_ns(base, check_range=False)
                if len(parts) == 7:
                    ns += int(float(parts[6]) * 10**6)  # milliseconds part
                return ns
            except (ValueError, TypeError, OverflowError):
                pass
        self.error(f"invalid datetime literal '{raw}': use ISO 8601, e.g. "
                   "datetime(2024-01-31) or datetime(2024-01-31T08:20:03.1234567Z)", t)

    def parse_typed_literal(self) -> N.Expr:
        t = self.advance()
        self.advance()  # (
        kind = {"int": "long", "double": "real", "boolean": "bool"}.get(t.value, t.value)
        if kind in ("decimal", "guid"):
            self.error(f"'{t.value}' literals are not supported by the local engine", t,
                       cls=KqlUnsupported)
        v = self.tok
        value: Any
        if self.is_word("null"):
            self.advance()
            value = None
        elif kind == "long" and v.kind == "LONG":
            value = self.advance().value
        elif kind == "long" and self.is_op("-") and self.peek().kind == "LONG":
            self.advance()
            value = -self.advance().value
        elif kind == "real" and v.kind in ("LONG", "REAL"):
            value = float(self.advance().value)
        elif kind == "real" and self.is_op("-") and self.peek().kind in ("LONG", "REAL"):
            self.advance()
            value = -float(self.advance().value)
        elif kind == "real" and v.kind == "IDENT" and v.value in ("nan", "inf", "NaN"):
            self.advance()
            value = float("nan") if v.value.lower() == "nan" else float("inf")
        elif kind == "bool" and self.tok.kind == "IDENT" and v.value in ("true", "false"):
            value = self.advance().value == "true"
        elif kind == "string" and v.kind == "STRING":
            value = self.advance().value
        else:
            self.error(f"invalid {t.value}() literal: expected a {kind} value or null")
        end = self.expect_op(")", f" to close '{t.value}('").end
        if kind == "string" and value is None:
            value = ""
        return N.Literal(value, kind, span=(t.start, end))

    def parse_arg(self, fname: str) -> N.Expr:
        if self._starts_tabular(self.i) or (fname == "toscalar" and self.tok.kind == "IDENT"
                                            and self.peek().kind == "OP"
                                            and self.peek().value == ")"
                                            and False):
            t = self.tok
            p = self.parse_pipeline()
            return N.SubQuery(p, span=(t.start, p.span[1]))
        return self.parse_expr()

    def parse_dynamic(self) -> N.Expr:
        t = self.advance()
        self.advance()  # (
        value = self.parse_json_value()
        end = self.expect_op(")", " to close 'dynamic('").end
        return N.Literal(value, "dynamic", span=(t.start, end))

    def parse_json_value(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.error("dynamic literal nested too deeply")
        try:
            t = self.tok
            if t.kind == "STRING":
                self.advance()
                return t.value
            if t.kind in ("LONG", "REAL"):
                self.advance()
                return t.value
            if self.is_op("-") and self.peek().kind in ("LONG", "REAL"):
                self.advance()
                return -self.advance().value
            if t.kind == "IDENT" and t.value in ("true", "false", "null") and not t.quoted:
                self.advance()
                return {"true": True, "false": False, "null": None}[t.value]
            if self.is_op("["):
                self.advance()
                arr = []
                while not self.is_op("]"):
                    arr.append(self.parse_json_value())
                    if self.is_op(","):
                        self.advance()
                    elif not self.is_op("]"):
                        self.error(f"expected ',' or ']' but found {self.describe(self.tok)}")
                self.advance()
                return arr
            if t.kind == "IDENT" and t.quoted:  # lexer turned ['x'] into an ident
                self.advance()
                return [t.value]
            if self.is_op("{"):
                self.advance()
                obj: dict[str, Any] = {}
                while not self.is_op("}"):
                    k = self.tok
                    if k.kind not in ("STRING", "IDENT"):
                        self.error(f"expected a property name but found {self.describe(k)}")
                    self.advance()
                    self.expect_op(":", " after the property name")
                    obj[k.value] = self.parse_json_value()
                    if self.is_op(","):
                        self.advance()
                    elif not self.is_op("}"):
                        self.error(f"expected ',' or '}}' but found {self.describe(self.tok)}")
                self.advance()
                return obj
            self.error(f"expected a JSON value in dynamic() but found {self.describe(t)}")
        finally:
            self.depth -= 1

    def parse_call(self) -> N.Expr:
        t = self.advance()
        self.advance()  # (
        args: list[N.Expr] = []
        if not self.is_op(")"):
            args.append(self.parse_arg(t.value))
            while self.is_op(","):
                self.advance()
                args.append(self.parse_arg(t.value))
        end = self.expect_op(")", f" to close '{t.value}('").end
        return N.Call(t.value, args, span=(t.start, end), name_span=(t.start, t.end))


def _with_span(e: N.Expr, span: tuple[int, int]) -> N.Expr:
    # Parenthesised expression: the node is the same, the span covers the parentheses.
    e.span = span  # type: ignore[attr-defined]
    return e


def parse(query: str) -> N.Query:
    """Parse KQL text into a :class:`Query` AST. Raises :class:`KqlSyntaxError` /
    :class:`KqlUnsupported` with the line and column of the problem."""
    if not isinstance(query, str):
        raise KqlSyntaxError(f"a KQL query must be text, not {type(query).__name__}")
    parser = Parser(query)
    try:
        return parser.parse_query()
    except RecursionError:
        # safety net: the depth limits should stop every nesting first
        t = parser.tok
        raise KqlSyntaxError("query nested too deeply", query=query,
                             span=(t.start, max(t.end, t.start + 1))) from None
