"""Expression parsing (the scalar grammar: literals, names, calls, operators by
precedence, assignments and sort keys) over a token cursor; the statement and operator
levels build on it (:mod:`.parse_ops`, :mod:`.parser`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NoReturn

from psanalytics._time import datetime_to_ns, instant_or_none, parse_timespan
from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlError, KqlSyntaxError, KqlUnsupported, suggest
from psanalytics.query.kql.lexer import Token, tokenize

TYPE_NAMES = ("string", "long", "int", "real", "double", "bool", "boolean", "datetime",
              "date", "timespan", "time", "dynamic", "decimal", "guid")

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


class TokenCursor:
    """Tokens, a position and the helpers every parsing level uses."""

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
    def parse_type_name(self) -> str:
        t = self.ident("a type name")
        if t.value not in TYPE_NAMES:
            self.error(f"unknown type '{t.value}'", t, suggestion=suggest(t.value, TYPE_NAMES))
        return {"int": "long", "double": "real", "boolean": "bool", "date": "datetime",
                "time": "timespan"}.get(t.value, t.value)



class ExprParser(TokenCursor):
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
            if t.value == "null" and not (self.peek().kind == "OP" and self.peek().value == "("):
                # a bare null: the null of no particular type, read as dynamic(null) (it
                # compares, tests and fills like every other null)
                self.advance()
                return N.Literal(None, "dynamic", span=(t.start, t.end))
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

