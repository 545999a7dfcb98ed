"""AST nodes. Every node keeps its source span ``(start, end)`` (0-based character
offsets into the query); spans do not take part in equality, so ``parse(format(ast))
== ast`` holds for a round trip."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

Span = tuple[int, int]


def _span() -> Any:
    return field(default=(0, 0), compare=False, repr=False)


@dataclass
class Node:
    pass


def children(node: Node) -> list[Any]:
    """The values of ``node``'s fields other than its spans (the fields that take part in
    equality): child nodes, lists of them, names and literals."""
    return [getattr(node, f.name) for f in fields(node) if f.compare]


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
class As(Op):
    name: str
    span: Span = _span()


@dataclass
class Join(Op):
    """``join kind=K (right) on keys``; ``on`` items are Names (same column both sides)
    or ``$left.a == $right.b`` Binary nodes. ``keyword`` is join or lookup."""

    kind: str | None
    right: Pipeline
    on: list[Expr]
    keyword: str = "join"
    span: Span = _span()


@dataclass
class Union(Op):
    """``union [kind=inner|outer] [withsource=Name] T1, T2`` (as an operator the input is
    the first table)."""

    tables: list[Pipeline]
    kind: str | None = None
    withsource: str | None = None
    #: ``isfuzzy=true``: a name pattern that matches no table is left out
    fuzzy: bool = False
    span: Span = _span()


@dataclass
class MvExpand(Op):
    """``mv-expand [kind=bag|array] [with_itemindex=I] c1 [to typeof(T)], ... [limit N]``;
    items are (name or None, expr, type or None)."""

    items: list[tuple[str | None, Expr, str | None]]
    kind: str | None = None
    itemindex: str | None = None
    limit: Expr | None = None
    span: Span = _span()


@dataclass
class MvApply(Op):
    """``mv-apply [with_itemindex=I] c1 [to typeof(T)], ... [limit N] on (op | ...)``: the
    subquery (``ops``, with an implicit source) runs on each input row's expansion."""

    items: list[tuple[str | None, Expr, str | None]]
    itemindex: str | None
    limit: Expr | None
    ops: list[Op]
    span: Span = _span()


@dataclass
class Parse(Op):
    """``parse [kind=simple|regex] [flags=F] expr with parts``; parts alternate string
    literals and (column name, type or None)."""

    expr: Expr
    parts: list[str | tuple[str, str | None]]
    kind: str | None = None
    flags: str | None = None
    where: bool = False
    span: Span = _span()


@dataclass
class MakeSeries(Op):
    """``make-series [N =] agg [default = v], ... on axis [from a] [to b] step s [by ...]``."""

    aggs: list[tuple[Assign, Expr | None]]
    on: Expr
    start: Expr | None
    stop: Expr | None
    step: Expr
    by: list[Assign]
    #: ``kind=nonempty``: a series of defaults even when no row is in the input
    kind: str | None = None
    span: Span = _span()


@dataclass
class Serialize(Op):
    items: list[Assign]
    span: Span = _span()


@dataclass
class Sample(Op):
    count: Expr
    span: Span = _span()


@dataclass
class SampleDistinct(Op):
    count: Expr
    expr: Expr
    span: Span = _span()


@dataclass
class ProjectReorder(Op):
    names: list[tuple[Name, str | None]]
    span: Span = _span()


@dataclass
class GetSchema(Op):
    span: Span = _span()


@dataclass
class TopNested(Op):
    """``top-nested [N] of expr [with others = v] by agg [asc|desc], ...``; levels are
    (count or None, name or None, expr, others or None, agg name or None, agg, asc)."""

    levels: list[tuple[Expr | None, str | None, Expr, Expr | None, str | None, Expr, bool]]
    span: Span = _span()


@dataclass
class TableRef(Node):
    name: str
    span: Span = _span()


@dataclass
class PrintSource(Node):
    items: list[Assign]
    span: Span = _span()


@dataclass
class DatatableSource(Node):
    columns: list[tuple[str, str]]
    values: list[Expr]
    span: Span = _span()


@dataclass
class RangeSource(Node):
    name: str
    start: Expr
    stop: Expr
    step: Expr
    span: Span = _span()


@dataclass
class CallSource(Node):
    """A tabular function call (``f(1, T)``), a view, or ``materialize(T)``."""

    name: str
    args: list[Expr | Pipeline]
    span: Span = _span()


@dataclass
class UnionSource(Node):
    union: Union
    span: Span = _span()


@dataclass
class SearchSource(Node):
    """``search [kind=K] [in (T1, T2*)] predicate`` as a table source (the tables in scope
    when no ``in``); rows get a ``$table`` column."""

    kind: str | None
    tables: list[Pipeline] | None
    pred: Expr
    span: Span = _span()


@dataclass
class Pipeline(Node):
    source: (TableRef | PrintSource | DatatableSource | RangeSource | CallSource
             | UnionSource | SearchSource)
    ops: list[Op]
    span: Span = _span()


@dataclass
class SubQuery(Expr):
    """A tabular expression used as a value: ``toscalar(T | count)``,
    ``x in (T | project y)``."""

    pipeline: Pipeline
    span: Span = _span()


@dataclass
class Param(Node):
    """A function parameter: ``x:long``, ``x:long = 5``, ``T:(*)``, ``T:(a:long)``;
    ``ktype`` is ``"table"`` for tabular parameters."""

    name: str
    ktype: str
    default: Expr | None = None
    columns: list[tuple[str, str]] | None = None


@dataclass
class FuncDef(Node):
    """``(params) { lets; body }`` or ``view () { ... }``."""

    params: list[Param]
    lets: list[Let]
    body: Expr | Pipeline
    view: bool = False
    span: Span = _span()


@dataclass
class Let(Node):
    name: str
    value: Expr | Pipeline | FuncDef
    span: Span = _span()
    name_span: Span = _span()


@dataclass
class Query(Node):
    lets: list[Let]
    body: Pipeline
    span: Span = _span()
