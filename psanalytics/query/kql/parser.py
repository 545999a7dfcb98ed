"""KQL parser: tokens -> :class:`~psanalytics.query.kql.nodes.Query` (nodes keep spans).

Three levels, one module each: :mod:`.parse_exprs` (the token cursor and scalar
expressions), :mod:`.parse_ops` (tabular operators, through a dispatch table) and this
module (statements, lets, functions, table sources and pipelines)."""

from __future__ import annotations

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlSyntaxError, KqlUnsupported, suggest
from psanalytics.query.kql.parse_exprs import (  # noqa: F401 - re-exported
    LIST_OPS,
    MAX_DEPTH,
    MAX_EXPR_DEPTH,
    STRING_OPS,
    TYPE_NAMES,
)
from psanalytics.query.kql.parse_ops import (  # noqa: F401 - re-exported
    ALL_OPERATORS,
    JOIN_KINDS,
    OPERATOR_PARSERS,
    SUPPORTED_OPERATORS,
    UNSUPPORTED_OPERATORS,
    OperatorParser,
)

#: Words that start a tabular expression (a table source).
SOURCE_WORDS = ("print", "datatable", "range", "union", "materialize", "view")


class Parser(OperatorParser):
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
            if t.value in ("print", "union", "search") and not (nxt.kind == "OP"
                                                                and nxt.value in "=("):
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
        # `print (x)` prints x; only a let function named print is called as print(...)
        if word == "print" and not (word in self.tabular_funcs and nxt.kind == "OP"
                                    and nxt.value == "("):
            self.advance()
            items: list[N.Assign] = []
            if not (self.is_op("|") or self.is_op(";") or self.is_op(")")
                    or self.tok.kind == "EOF"):
                items = self.parse_assign_list("print")
            return N.PrintSource(items, span=(t.start, self.toks[self.i - 1].end))
        if word == "datatable" and nxt.kind == "OP" and nxt.value == "(":
            return self.parse_datatable()
        if word == "range" and nxt.kind == "IDENT":
            return self.parse_range()
        if word == "union":
            self.advance()
            u = self.parse_union_body()
            u.span = (t.start, self.toks[self.i - 1].end)
            return N.UnionSource(u, span=u.span)
        if word == "search":
            return self.parse_search()
        if word in ("find", "evaluate", "externaldata", "cluster", "database",
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

    def parse_datatable(self) -> N.DatatableSource:
        """``datatable(name:type, ...) [values, ...]``."""
        t = self.advance()  # datatable
        self.advance()  # (
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

    def parse_range(self) -> N.RangeSource:
        """``range name from start to stop step step``."""
        t = self.tok
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

    def parse_search(self) -> N.SearchSource:
        t = self.advance()  # search
        kind = self.parse_options(("kind",)).get("kind")
        kinds = ("default", "case_insensitive", "case_sensitive")
        if kind is not None and kind not in kinds:
            self.error(f"search kind must be one of {', '.join(kinds)}, not '{kind}'",
                       self.toks[self.i - 1])
        tables = None
        if self.is_word("in") and self.peek().kind == "OP" and self.peek().value == "(":
            self.advance()
            self.advance()
            tables = [self.parse_pipeline_term(wildcard=True)]
            while self.is_op(","):
                self.advance()
                tables.append(self.parse_pipeline_term(wildcard=True))
            self.expect_op(")", " to close 'in (' (the tables to search)")
        if self.tok.kind == "EOF" or self.is_op("|"):
            self.error(f"expected a search predicate but found {self.describe(self.tok)}")
        pred = self.parse_expr()
        return N.SearchSource(kind, tables, pred, span=(t.start, pred.span[1]))

    def _skip_parens_is_end(self, j: int) -> bool:
        k = self._skip_parens(j)
        return self.toks[k].kind == "EOF"

    def parse_union_body(self) -> N.Union:
        kind = withsource = None
        fuzzy = False
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
                fuzzy = val.value == "true"
            else:
                self.error(f"unknown union option '{opt}'", suggestion=suggest(
                    opt, ["kind", "withsource", "isfuzzy"]))
        tables = [self.parse_pipeline_term(wildcard=True)]
        while self.is_op(","):
            self.advance()
            tables.append(self.parse_pipeline_term(wildcard=True))
        return N.Union(tables, kind, withsource, fuzzy)

    def parse_pipeline_term(self, wildcard: bool = False) -> N.Pipeline:
        """A table operand of union/join: a name, a call or a parenthesized pipeline (a bare
        name does not take the following '|'); for union also a name pattern (``View*``)."""
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
            if not wildcard:
                self.error("a table name pattern is only allowed in union", t)
            pat = self.parse_column_pattern()
            return N.Pipeline(N.TableRef(pat.name, span=pat.span), [], span=pat.span)
        src = self.parse_source()
        return N.Pipeline(src, [], span=(t.start, self.toks[self.i - 1].end))


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
