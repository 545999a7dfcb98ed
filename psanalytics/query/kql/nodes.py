"""AST nodes. Every node keeps its source span ``(start, end)`` (0-based character
offsets into the query); spans do not take part in equality, so ``parse(format(ast))
== ast`` holds for a round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int]


def _span() -> Any:
    return field(default=(0, 0), compare=False, repr=False)


@dataclass
class Node:
    pass


# --------------------------------------------------------------------------- scalars


@dataclass
class Expr(Node):
    pass


@dataclass
class Literal(Expr):
    """``ktype`` is one of string, long, real, bool, datetime (value: ns since the Unix
    epoch), timespan (value: ns), dynamic (value: a Python object); value None = null."""

    value: Any
    ktype: str
    span: Span = _span()


@dataclass
class Name(Expr):
    name: str
    span: Span = _span()


@dataclass
class Member(Expr):
    """``obj.key`` (``bracket=False``) or ``obj['key']`` (``bracket=True``)."""

    obj: Expr
    key: str
    bracket: bool = False
    span: Span = _span()


@dataclass
class Index(Expr):
    """``obj[expr]`` with a non-string-literal index (array index or computed key)."""

    obj: Expr
    index: Expr
    span: Span = _span()


@dataclass
class Call(Expr):
    name: str
    args: list[Expr]
    span: Span = _span()
    name_span: Span = _span()


@dataclass
class Star(Expr):
    span: Span = _span()


@dataclass
class Unary(Expr):
    op: str
    operand: Expr
    span: Span = _span()


@dataclass
class Binary(Expr):
    op: str
    left: Expr
    right: Expr
    span: Span = _span()
    op_span: Span = _span()


@dataclass
class InList(Expr):
    """``left in (items)``; op is one of in, !in, in~, !in~, has_any, has_all."""

    op: str
    left: Expr
    items: list[Expr]
    span: Span = _span()
    op_span: Span = _span()


@dataclass
class Between(Expr):
    negated: bool
    left: Expr
    low: Expr
    high: Expr
    span: Span = _span()


# --------------------------------------------------------------------------- tabular


@dataclass
class Assign(Node):
    """``name = expr`` or a bare ``expr`` (name None)."""

    name: str | None
    expr: Expr
    span: Span = _span()


@dataclass
class SortKey(Node):
    expr: Expr
    asc: bool | None = None
    nulls_first: bool | None = None
    span: Span = _span()


@dataclass
class Op(Node):
    pass


@dataclass
class Where(Op):
    pred: Expr
    keyword: str = "where"
    span: Span = _span()


@dataclass
class Project(Op):
    items: list[Assign]
    span: Span = _span()


@dataclass
class ProjectAway(Op):
    names: list[Name]
    keep: bool = False
    span: Span = _span()


@dataclass
class ProjectRename(Op):
    pairs: list[tuple[str, Name]]
    span: Span = _span()


@dataclass
class Extend(Op):
    items: list[Assign]
    span: Span = _span()


@dataclass
class Summarize(Op):
    aggs: list[Assign]
    by: list[Assign]
    span: Span = _span()


@dataclass
class Count(Op):
    span: Span = _span()


@dataclass
class Distinct(Op):
    items: list[Expr] | None  # None = *
    span: Span = _span()


@dataclass
class Take(Op):
    count: Expr
    keyword: str = "take"
    span: Span = _span()


@dataclass
class Top(Op):
    count: Expr
    key: SortKey
    span: Span = _span()


@dataclass
class Sort(Op):
    keys: list[SortKey]
    keyword: str = "sort"
    span: Span = _span()


@dataclass
class Render(Op):
    kind: str
    props: list[tuple[str, Expr]]
    span: Span = _span()


@dataclass
class TableRef(Node):
    name: str
    span: Span = _span()


@dataclass
class Pipeline(Node):
    source: TableRef
    ops: list[Op]
    span: Span = _span()


@dataclass
class Let(Node):
    name: str
    value: Expr | Pipeline
    span: Span = _span()
    name_span: Span = _span()


@dataclass
class Query(Node):
    lets: list[Let]
    body: Pipeline
    span: Span = _span()
