"""String functions: case, length, substring, concatenation, trim, replace, indexof,
split, extract, countof, reverse, URL coding, regex replace, extract_all."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.functions._base import (
    FUNC_IMPLS,
    Impl,
    V,
    _dumps,
    _dyn,
    _per_value,
    _s,
    args,
    const_long,
    const_str,
    fn,
    want,
)
from psanalytics.query.kql.types import (
    _DTYPES,
    Table,
    Val,
    _lit,
)

if TYPE_CHECKING:
    from psanalytics.query.kql.compiler import Compiler


@fn("tolower")
def _tolower(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = _s(c, a, e.args[0])
    return V(a.expr.str.to_lowercase(), "string", a, nullable=False)


@fn("toupper")
def _toupper(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = _s(c, a, e.args[0])
    return V(a.expr.str.to_uppercase(), "string", a, nullable=False)


@fn("strlen")
def _strlen(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    a = _s(c, a, e.args[0])
    return V(a.expr.str.len_chars().cast(pl.Int64), "long", a, nullable=False)


@fn("substring")
def _substring(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    s = _s(c, a[0], e.args[0])
    start = want(c, a[1], e.args[1], "long").expr
    # a negative start counts from the end (substring("123456", -2, 2) == "56")
    if len(a) > 2:
        ln = want(c, a[2], e.args[2], "long").expr
        ln = pl.when(ln < 0).then(0).otherwise(ln)
        r = s.expr.str.slice(start, ln)
    else:
        r = s.expr.str.slice(start)
    return V(r.fill_null(""), "string", *a, nullable=False)


@fn("strcat")
def _strcat(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 1, 64)
    parts = [_s(c, v, n).expr for v, n in zip(a, e.args, strict=True)]
    return V(pl.concat_str(parts), "string", *a, nullable=False)


@fn("strcat_delim")
def _strcat_delim(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 3, 64)
    d = const_str(c, a[0], e.args[0], "the delimiter")
    parts = [_s(c, v, n).expr for v, n in zip(a[1:], e.args[1:], strict=True)]
    return V(pl.concat_str(parts, separator=d), "string", *a, nullable=False)


def _trim(which: str) -> Impl:
    def impl(c: Compiler, e: N.Call, t: Table) -> Val:
        rx, s = args(c, e, t, 2)
        pat = const_str(c, rx, e.args[0], "the trim pattern")
        c.check_regex(pat, e.args[0])
        s = _s(c, s, e.args[1])
        r = s.expr
        if which in ("both", "start"):
            r = r.str.replace(f"^(?:{pat})+", "")
        if which in ("both", "end"):
            r = r.str.replace(f"(?:{pat})+$", "")
        return V(r, "string", s, nullable=False)
    return impl


FUNC_IMPLS["trim"] = _trim("both")
FUNC_IMPLS["trim_start"] = _trim("start")
FUNC_IMPLS["trim_end"] = _trim("end")


@fn("replace_string")
def _replace_string(c: Compiler, e: N.Call, t: Table) -> Val:
    s, a, b = args(c, e, t, 3)
    s = _s(c, s, e.args[0])
    old = const_str(c, a, e.args[1], "the lookup text")
    new = const_str(c, b, e.args[2], "the replacement")
    if old == "":
        return s
    return V(s.expr.str.replace_all(old, new, literal=True), "string", s, nullable=False)


def _indexof_py(start: int, length: int, occurrence: int) -> Callable[[Any], Any]:
    def one(pair: dict[str, Any]) -> int | None:
        src, look = pair["s"], pair["l"]
        if src is None or look is None:
            return None
        n = len(src)
        st = start if start >= 0 else max(0, n + start)
        if st > n:
            return -1
        # each further occurrence is looked for in a window of `length` characters from
        # just after the previous one (the reference's example: indexof("abcdefgabcdefg",
        # "cde", 1, 10, 2) is 9, though [1, 11) holds only the first)
        pos = st - 1
        for _ in range(occurrence):
            at = pos + 1
            pos = src.find(look, at, n if length < 0 else min(n, at + length))
            if pos < 0:
                return -1
        return pos
    return one


@fn("indexof")
def _indexof(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 5)
    s = _s(c, a[0], e.args[0])
    look = _s(c, a[1], e.args[1])
    if len(a) == 2 and look.is_const:
        r = s.expr.str.find(look.const, literal=True).cast(pl.Int64).fill_null(-1)
        return V(r, "long", s, nullable=False)
    start = const_long(c, a[2], e.args[2], "the start") if len(a) > 2 else 0
    length = const_long(c, a[3], e.args[3], "the length") if len(a) > 3 else -1
    occ = const_long(c, a[4], e.args[4], "the occurrence") if len(a) > 4 else 1
    if occ < 1:
        raise c.sem("indexof() occurrence must be >= 1", e.args[4])
    one = _indexof_py(start, length, occ)
    r = pl.struct(s.expr.alias("s"), look.expr.alias("l")).map_batches(
        lambda b: pl.Series([one(x) for x in b.to_list()], dtype=pl.Int64),
        return_dtype=pl.Int64)
    return V(r, "long", s, look)


@fn("split")
def _split(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    s = _s(c, a[0], e.args[0])
    d = const_str(c, a[1], e.args[1], "the delimiter")
    if len(a) == 3:
        i = const_long(c, a[2], e.args[2], "the index")
        # a one-element array (empty when the index is out of range)
        r = s.expr.str.split(d).list.slice(i, 1) if i >= 0 else \
            s.expr.str.split(d).list.slice(0, 0)
        return Val(r, "dynamic", True, is_list=True, agg=s.agg)
    return Val(s.expr.str.split(d), "dynamic", True, is_list=True, agg=s.agg)


@fn("extract")
def _extract(c: Compiler, e: N.Call, t: Table) -> Val:
    if len(e.args) == 4:
        ty = e.args[3]
        if not (isinstance(ty, N.Call) and ty.name == "typeof" and len(ty.args) == 1
                and isinstance(ty.args[0], N.Name)):
            raise c.sem("extract()'s fourth argument is typeof(T)", ty)
        kt = {"int": "long", "double": "real", "boolean": "bool", "date": "datetime",
              "time": "timespan"}.get(ty.args[0].name, ty.args[0].name)
        inner = _extract(c, N.Call("extract", e.args[:3], span=e.span,
                                   name_span=e.name_span), t)
        g = pl.when(inner.expr != "").then(inner.expr)
        if kt in ("long", "real", "bool"):
            return V(g.cast(_DTYPES[kt], strict=False), kt, inner)
        if kt == "string":
            return inner
        if kt == "datetime":
            from psanalytics.schema import parse_time_expr
            return V(parse_time_expr(g), "datetime", inner)
        raise c.sem(f"extract() to typeof({kt}) is not supported locally", ty,
                    cls=KqlUnsupported)
    a = args(c, e, t, 3)
    pat = const_str(c, a[0], e.args[0], "the regex")
    c.check_regex(pat, e.args[0])
    g = const_long(c, a[1], e.args[1], "the capture group")
    s = _s(c, a[2], e.args[2])
    return V(s.expr.str.extract(pat, g).fill_null(""), "string", s, nullable=False)


def _self_overlaps(needle: str) -> bool:
    return any(needle[:k] == needle[-k:] for k in range(1, len(needle)))


def _count_overlapping(needle: str) -> Callable[[pl.Series], pl.Series]:
    def count(text: str | None) -> int:
        if text is None:
            return 0
        n, i = 0, text.find(needle)
        while i >= 0:
            n += 1
            i = text.find(needle, i + 1)
        return n

    def batch(s: pl.Series) -> pl.Series:
        return pl.Series([count(x) for x in s.to_list()], dtype=pl.Int64)
    return batch


@fn("countof")
def _countof(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    s = _s(c, a[0], e.args[0])
    needle = const_str(c, a[1], e.args[1], "the search text")
    kind = const_str(c, a[2], e.args[2], "the kind") if len(a) > 2 else "normal"
    if kind not in ("normal", "regex"):
        raise c.sem(f"countof() kind must be 'normal' or 'regex', not '{kind}'", e.args[2])
    if needle == "":
        return _lit(0, "long")
    if kind == "regex":
        c.check_regex(needle, e.args[1])
        r = s.expr.str.count_matches(needle)
    elif _self_overlaps(needle):
        # plain matches may overlap (countof("aaaa", "aa") == 3): Polars counts
        # non-overlapping ones, so such needles are counted per value
        r = s.expr.map_batches(_count_overlapping(needle), return_dtype=pl.Int64)
    else:
        r = s.expr.str.count_matches(needle, literal=True)
    return V(r.cast(pl.Int64), "long", s, nullable=False)


@fn("reverse")
def _reverse(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return V(s.expr.str.reverse(), "string", s, nullable=False)


def _dotnet_url_encode(x: str, component: bool) -> str:
    """.NET HttpUtility.UrlEncode: space -> '+', lower-case hex, ``-_.!*()`` kept."""
    from urllib.parse import quote
    if component:
        return quote(x, safe="")
    out = quote(x, safe="-_.!*() ").replace(" ", "+")
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), out)


@fn("url_encode", "url_encode_component")
def _url_encode(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    comp = e.name == "url_encode_component"
    r = s.expr.map_batches(_per_value(lambda x: None if x is None else
                                      _dotnet_url_encode(x, comp), pl.String),
                           return_dtype=pl.String)
    return V(r.fill_null(""), "string", s, nullable=False)


@fn("url_decode")
def _url_decode(c: Compiler, e: N.Call, t: Table) -> Val:
    from urllib.parse import unquote
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    r = s.expr.map_batches(_per_value(lambda x: None if x is None else unquote(x),
                                      pl.String), return_dtype=pl.String)
    return V(r.fill_null(""), "string", s, nullable=False)


def _parse_url(x: str | None) -> str | None:
    from urllib.parse import parse_qsl, urlsplit
    if not x:
        return _dumps({})
    try:
        u = urlsplit(x)
    except ValueError:
        return _dumps({})
    if not u.scheme or not u.netloc:
        return _dumps({})
    return _dumps({
        "Scheme": u.scheme, "Host": u.hostname or "", "Port": str(u.port or ""),
        "Path": u.path, "Username": u.username or "", "Password": u.password or "",
        "Query Parameters": dict(parse_qsl(u.query, keep_blank_values=True)),
        "Fragment": u.fragment,
    })


def _parse_urlquery(x: str | None) -> str | None:
    from urllib.parse import parse_qsl
    q = (x or "")
    if "?" in q:
        q = q.split("?", 1)[1]
    return _dumps({"Query Parameters": dict(parse_qsl(q, keep_blank_values=True))})


@fn("parse_url")
def _parse_url_fn(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return _dyn(s.expr.map_batches(_per_value(_parse_url, pl.String), return_dtype=pl.String),
                s)


@fn("parse_urlquery")
def _parse_urlquery_fn(c: Compiler, e: N.Call, t: Table) -> Val:
    (a,) = args(c, e, t, 1)
    s = _s(c, a, e.args[0])
    return _dyn(s.expr.map_batches(_per_value(_parse_urlquery, pl.String),
                                   return_dtype=pl.String), s)


@fn("replace_regex")
def _replace_regex(c: Compiler, e: N.Call, t: Table) -> Val:
    s, rx, rw = args(c, e, t, 3)
    s = _s(c, s, e.args[0])
    pat = const_str(c, rx, e.args[1], "the regex")
    c.check_regex(pat, e.args[1])
    rep = const_str(c, rw, e.args[2], "the rewrite")
    # Kusto writes groups as \1; Polars (Rust regex) as ${1}
    rep = re.sub(r"\$", "$$", rep)
    rep = re.sub(r"\\(\d+)", r"${\1}", rep)
    return V(s.expr.str.replace_all(pat, rep), "string", s, nullable=False)


@fn("extract_all")
def _extract_all(c: Compiler, e: N.Call, t: Table) -> Val:
    a = args(c, e, t, 2, 3)
    pat = const_str(c, a[0], e.args[0], "the regex")
    c.check_regex(pat, e.args[0])
    rx = re.compile(pat)
    groups: list[int | str] | None = None
    if len(a) == 3:
        gv = a[1]
        if not gv.is_const or not isinstance(gv.const, list):
            raise c.sem("extract_all() groups must be a dynamic array literal", e.args[1],
                        cls=KqlUnsupported)
        groups = []
        for g in gv.const:
            # a group is a number (0: the whole match) or a (?P<name>...) group's name
            ok = (g in rx.groupindex if isinstance(g, str)
                  else isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= rx.groups)
            if not ok:
                raise c.sem(f"extract_all(): the regex has no capture group {g!r} (it has "
                            f"{rx.groups}{', named ' + ', '.join(rx.groupindex) if rx.groupindex else ''})",
                            e.args[1])
            groups.append(g)
    s = _s(c, a[-1], e.args[-1])

    def one(x: str | None) -> str | None:
        if x is None:
            return None
        out = []
        for m in rx.finditer(x):
            if groups is not None:
                out.append([m.group(g) for g in groups] if len(groups) > 1
                           else m.group(groups[0]))
            elif rx.groups <= 1:
                out.append(m.group(rx.groups))
            else:
                out.append(list(m.groups()))
        return _dumps(out) if out else None
    r = s.expr.map_batches(_per_value(one, pl.String), return_dtype=pl.String)
    return _dyn(r, s)


