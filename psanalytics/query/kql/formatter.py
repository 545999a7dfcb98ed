"""``format(ast)``: normalized KQL text. Round-trips: ``parse(format(ast)) == ast``."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta

from psanalytics.query.kql import nodes as N

_RESERVED = frozenset({
    "and", "or", "not", "true", "false", "by", "asc", "desc", "nulls", "first", "last",
    "between", "in", "let", "with", "matches", "regex", "has", "has_cs", "hasprefix",
    "hasprefix_cs", "hassuffix", "hassuffix_cs", "contains", "contains_cs", "startswith",
    "startswith_cs", "endswith", "endswith_cs", "has_any", "has_all", "dynamic", "datetime",
    "time", "timespan", "long", "int", "real", "double", "bool", "boolean", "string",
    "decimal", "guid", "null", "set", "declare", "alias", "kind", "view", "materialize",
    "datatable", "range", "print", "union", "search", "find", "evaluate", "externaldata",
    "cluster", "database", "table",
})
_UNITS = [("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("m", 60 * 10**9), ("s", 10**9),
          ("ms", 10**6), ("microsecond", 1000), ("tick", 100)]


def _name(n: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) and n not in _RESERVED \
            and not re.fullmatch(r"[hH]", n):
        return n
    return "[" + _str(n) + "]"


def _str(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t").replace("\r", "\\r").replace("\0", "\\0")
    return '"' + out + '"'


def _datetime(ns: int) -> str:
    secs, frac = divmod(ns, 10**9)
    d = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
    text = d.strftime("%Y-%m-%dT%H:%M:%S")
    if d.year < 1000:
        text = f"{d.year:04d}" + text[text.index("-"):]
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return f"datetime({text}Z)"


def _timespan(ns: int) -> str:
    if ns < 0:
        return "-" + _timespan(-ns)
    for unit, size in _UNITS:
        if ns % size == 0:
            return f"{ns // size}{unit}"
    whole, rem = divmod(ns, 100)
    return f"{whole}.{f'{rem:02d}'.rstrip('0')}tick"


def _real(v: float) -> str:
    if math.isnan(v):
        return "real(nan)"
    if math.isinf(v):
        return "real(inf)" if v > 0 else "-real(inf)"
    r = repr(float(v))
    if "e" not in r and "." not in r:
        r += ".0"
    return r


def literal(e: N.Literal) -> str:
    v, k = e.value, e.ktype
    if k == "string":
        return _str(v)
    if v is None:
        return {"datetime": "datetime(null)", "timespan": "time(null)",
                "dynamic": "dynamic(null)"}.get(k, f"{k}(null)")
    if k == "long":
        return str(v)
    if k == "real":
        return _real(v)
    if k == "bool":
        return "true" if v else "false"
    if k == "datetime":
        return _datetime(v)
    if k == "timespan":
        return _timespan(v)
    if k == "dynamic":
        return "dynamic(" + json.dumps(v, ensure_ascii=False) + ")"
    raise ValueError(f"unknown literal type {k}")


def _wrap(e: N.Expr) -> str:
    s = expr(e)
    if isinstance(e, (N.Binary, N.InList, N.Between, N.Unary)):
        return f"({s})"
    return s


def expr(e: N.Expr) -> str:
    if isinstance(e, N.Literal):
        return literal(e)
    if isinstance(e, N.Name):
        return _name(e.name)
    if isinstance(e, N.Member):
        base = _wrap(e.obj)
        if e.bracket or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", e.key):
            return f"{base}[{_str(e.key)}]"
        return f"{base}.{e.key}"
    if isinstance(e, N.Index):
        return f"{_wrap(e.obj)}[{expr(e.index)}]"
    if isinstance(e, N.Call):
        return f"{e.name}({', '.join(expr(a) for a in e.args)})"
    if isinstance(e, N.Star):
        return "*"
    if isinstance(e, N.Unary):
        return f"{e.op}{_wrap(e.operand)}" if not isinstance(e.operand, N.Literal) \
            else f"{e.op}({expr(e.operand)})"
    if isinstance(e, N.Binary):
        return f"{_wrap(e.left)} {e.op} {_wrap(e.right)}"
    if isinstance(e, N.InList):
        return f"{_wrap(e.left)} {e.op} ({', '.join(expr(i) for i in e.items)})"
    if isinstance(e, N.Between):
        kw = "!between" if e.negated else "between"
        return f"{_wrap(e.left)} {kw} ({_wrap(e.low)} .. {_wrap(e.high)})"
    if isinstance(e, N.SubQuery):
        return pipeline(e.pipeline)
    raise TypeError(f"not an expression node: {type(e).__name__}")


def _assign(a: N.Assign) -> str:
    return expr(a.expr) if a.name is None else f"{_name(a.name)} = {expr(a.expr)}"


def _key(k: N.SortKey) -> str:
    s = expr(k.expr)
    if k.asc is not None:
        s += " asc" if k.asc else " desc"
    if k.nulls_first is not None:
        s += " nulls first" if k.nulls_first else " nulls last"
    return s


def operator(op: N.Op) -> str:
    # Long because: one short branch per operator node, in the order of nodes.py
    if isinstance(op, N.Where):
        return f"{op.keyword} {expr(op.pred)}"
    if isinstance(op, N.Project):
        return "project " + ", ".join(_assign(a) for a in op.items)
    if isinstance(op, N.ProjectAway):
        kw = "project-keep" if op.keep else "project-away"
        return kw + " " + ", ".join(n.name if "*" in n.name else _name(n.name)
                                    for n in op.names)
    if isinstance(op, N.ProjectRename):
        return "project-rename " + ", ".join(f"{_name(a)} = {_name(b.name)}"
                                             for a, b in op.pairs)
    if isinstance(op, N.Extend):
        return "extend " + ", ".join(_assign(a) for a in op.items)
    if isinstance(op, N.Summarize):
        s = "summarize"
        if op.aggs:
            s += " " + ", ".join(_assign(a) for a in op.aggs)
        if op.by:
            s += " by " + ", ".join(_assign(a) for a in op.by)
        return s
    if isinstance(op, N.Count):
        return "count"
    if isinstance(op, N.Distinct):
        return "distinct " + ("*" if op.items is None else ", ".join(expr(i) for i in op.items))
    if isinstance(op, N.Take):
        return f"{op.keyword} {expr(op.count)}"
    if isinstance(op, N.Top):
        return f"top {expr(op.count)} by {_key(op.key)}"
    if isinstance(op, N.Sort):
        return f"{op.keyword} by " + ", ".join(_key(k) for k in op.keys)
    if isinstance(op, N.Render):
        s = f"render {op.kind}"
        if op.props:
            s += " with (" + ", ".join(f"{k}={expr(v)}" for k, v in op.props) + ")"
        return s
    if isinstance(op, N.As):
        return f"as {_name(op.name)}"
    if isinstance(op, N.Join):
        s = op.keyword
        if op.kind is not None:
            s += f" kind={op.kind}"
        return s + f" ({pipeline(op.right)}) on " + ", ".join(expr(o) for o in op.on)
    if isinstance(op, N.Union):
        return "union " + _union(op)
    if isinstance(op, (N.MvExpand, N.MvApply)):
        s = "mv-expand" if isinstance(op, N.MvExpand) else "mv-apply"
        if isinstance(op, N.MvExpand) and op.kind is not None:
            s += f" kind={op.kind}"
        if op.itemindex is not None:
            s += f" with_itemindex={_name(op.itemindex)}"
        parts = []
        for name, e, totype in op.items:
            it = expr(e) if name is None else f"{_name(name)} = {expr(e)}"
            if totype is not None:
                it += f" to typeof({totype})"
            parts.append(it)
        s += " " + ", ".join(parts)
        if op.limit is not None:
            s += f" limit {expr(op.limit)}"
        if isinstance(op, N.MvApply):
            s += " on (" + " | ".join(operator(o) for o in op.ops) + ")"
        return s
    if isinstance(op, N.Parse):
        s = "parse-where" if op.where else "parse"
        if op.kind is not None:
            s += f" kind={op.kind}"
        if op.flags is not None:
            s += f" flags={op.flags}"
        out = []
        for p in op.parts:
            if isinstance(p, str):
                out.append(_str(p))
            elif p[0] == "*":
                out.append("*")
            else:
                out.append(_name(p[0]) + (f":{p[1]}" if p[1] else ""))
        return f"{s} {_wrap(op.expr)} with " + " ".join(out)
    if isinstance(op, N.MakeSeries):
        aggs = ", ".join(_assign(a) + (f" default={expr(d)}" if d is not None else "")
                         for a, d in op.aggs)
        s = "make-series" + (f" kind={op.kind}" if op.kind else "") + \
            f" {aggs} on {expr(op.on)}"
        if op.start is not None:
            s += f" from {expr(op.start)}"
        if op.stop is not None:
            s += f" to {expr(op.stop)}"
        s += f" step {expr(op.step)}"
        if op.by:
            s += " by " + ", ".join(_assign(a) for a in op.by)
        return s
    if isinstance(op, N.Serialize):
        return ("serialize " + ", ".join(_assign(a) for a in op.items)).rstrip()
    if isinstance(op, N.Sample):
        return f"sample {expr(op.count)}"
    if isinstance(op, N.SampleDistinct):
        return f"sample-distinct {expr(op.count)} of {expr(op.expr)}"
    if isinstance(op, N.ProjectReorder):
        return "project-reorder " + ", ".join(
            (n.name if "*" in n.name else _name(n.name)) + (f" {o}" if o else "")
            for n, o in op.names)
    if isinstance(op, N.GetSchema):
        return "getschema"
    if isinstance(op, N.TopNested):
        levels = []
        for cnt, name, e, others, aname, agg, asc in op.levels:
            s = "top-nested"
            if cnt is not None:
                s += f" {expr(cnt)}"
            s += " of " + (expr(e) if name is None else f"{_name(name)} = {expr(e)}")
            if others is not None:
                s += f" with others = {expr(others)}"
            s += " by " + (expr(agg) if aname is None else f"{_name(aname)} = {expr(agg)}")
            s += " asc" if asc else " desc"
            levels.append(s)
        return ", ".join(levels)
    raise TypeError(f"not an operator node: {type(op).__name__}")


def _union(u: N.Union) -> str:
    s = ""
    if u.kind is not None:
        s += f"kind={u.kind} "
    if u.withsource is not None:
        s += f"withsource={_name(u.withsource)} "
    if u.fuzzy:
        s += "isfuzzy=true "
    return s + ", ".join(p.source.name if isinstance(p.source, N.TableRef)
                         and "*" in p.source.name and not p.ops else f"({pipeline(p)})"
                         for p in u.tables)


def _type(k: str) -> str:
    return k


def source(src: N.Node) -> str:
    if isinstance(src, N.TableRef):
        return _name(src.name)
    if isinstance(src, N.PrintSource):
        return ("print " + ", ".join(_assign(a) for a in src.items)).rstrip()
    if isinstance(src, N.DatatableSource):
        cols = ", ".join(f"{_name(n)}:{_type(k)}" for n, k in src.columns)
        return f"datatable({cols}) [" + ", ".join(expr(v) for v in src.values) + "]"
    if isinstance(src, N.RangeSource):
        return (f"range {_name(src.name)} from {expr(src.start)} to {expr(src.stop)} "
                f"step {expr(src.step)}")
    if isinstance(src, N.CallSource):
        args = [f"({pipeline(a)})" if isinstance(a, N.Pipeline) else expr(a)
                for a in src.args]
        return f"{src.name}({', '.join(args)})"
    if isinstance(src, N.UnionSource):
        return "union " + _union(src.union)
    if isinstance(src, N.SearchSource):
        s = "search" + (f" kind={src.kind}" if src.kind else "")
        if src.tables is not None:
            s += " in (" + _union(N.Union(src.tables)) + ")"
        return s + " " + expr(src.pred)
    raise TypeError(f"not a table source: {type(src).__name__}")


def pipeline(p: N.Pipeline) -> str:
    return "\n".join([source(p.source), *("| " + operator(o) for o in p.ops)])


def _let(let: N.Let) -> str:
    v = let.value
    if isinstance(v, N.FuncDef):
        params = []
        for p in v.params:
            if p.ktype == "table":
                cols = ", ".join(f"{_name(n)}:{k}" for n, k in (p.columns or []))
                params.append(f"{_name(p.name)}:({cols or '*'})")
            else:
                d = f" = {expr(p.default)}" if p.default is not None else ""
                params.append(f"{_name(p.name)}:{p.ktype}{d}")
        body = [_let(inner) for inner in v.lets]
        body.append(pipeline(v.body) if isinstance(v.body, N.Pipeline) else expr(v.body))
        head = "view " if v.view else ""
        return (f"let {_name(let.name)} = {head}({', '.join(params)}) {{ "
                + " ".join(body) + " };")
    text = pipeline(v) if isinstance(v, N.Pipeline) else expr(v)
    return f"let {_name(let.name)} = {text};"


def format(ast: N.Query | N.Pipeline | N.Expr | str) -> str:  # noqa: A001 - public name
    """Normalized KQL text for an AST (or for query text, which is parsed first)."""
    if isinstance(ast, str):
        from psanalytics.query.kql.parser import parse
        ast = parse(ast)
    if isinstance(ast, N.Query):
        lines = []
        for let in ast.lets:
            lines.append(_let(let))
        lines.append(pipeline(ast.body))
        return "\n".join(lines)
    if isinstance(ast, N.Pipeline):
        return pipeline(ast)
    return expr(ast)
