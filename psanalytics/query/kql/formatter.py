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
    raise TypeError(f"not an operator node: {type(op).__name__}")


def pipeline(p: N.Pipeline) -> str:
    return "\n".join([_name(p.source.name), *("| " + operator(o) for o in p.ops)])


def format(ast: N.Query | N.Pipeline | N.Expr | str) -> str:  # noqa: A001 - public name
    """Normalized KQL text for an AST (or for query text, which is parsed first)."""
    if isinstance(ast, str):
        from psanalytics.query.kql.parser import parse
        ast = parse(ast)
    if isinstance(ast, N.Query):
        lines = []
        for let in ast.lets:
            v = pipeline(let.value) if isinstance(let.value, N.Pipeline) else expr(let.value)
            lines.append(f"let {_name(let.name)} = {v};")
        lines.append(pipeline(ast.body))
        return "\n".join(lines)
    if isinstance(ast, N.Pipeline):
        return pipeline(ast)
    return expr(ast)
