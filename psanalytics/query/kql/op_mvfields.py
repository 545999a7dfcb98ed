"""``mv-expand`` of JSON straight into the fields read from its elements.

``Events | mv-expand line = Payload.lines | summarize sum(toint(line.qty)) by
tostring(line.refCode)`` never uses an element whole, only ``line.qty`` and
``line.refCode``. When the operators after the ``mv-expand`` are ``where``/``extend``
and then a ``summarize`` (which drops the element column), and they read the expanded
column only as paths (``line.qty``, ``line['a'].b``, ``line.xs[0]``) with plain keys, each
distinct document is parsed once (orjson) and walked straight to those fields: no JSON
text is written per element and none is parsed again per expanded row (B6 in
benchmarks/kql.py: 74,428 elements of 14,406 distinct documents). Each field column
holds exactly what ``json_path_match`` reads from the element's JSON text on the general
path: a string without its quotes, integers and booleans as JSON writes them, null when
missing; numbers with a fraction, arrays and bags, and elements that are not JSON
structures (a string value expanded as itself) are read by ``json_path_match`` from the
element's text, as the general path does. ``tests/kql/test_kql_mv_fields.py`` compares
the two paths on generated documents.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.naming import column_name
from psanalytics.query.kql.types import _json_path, distinct_index

Path = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def member_chain(e: N.Expr) -> tuple[str, Path] | None:
    """``line.a['b'][0]`` -> ``("line", ("a", "b", 0))``; None unless the expression is a
    chain of plain keys and non-negative literal indexes below a name."""
    keys: list[str | int] = []
    while isinstance(e, (N.Member, N.Index)):
        if isinstance(e, N.Member):
            if not _PLAIN_KEY.fullmatch(e.key):
                return None
            keys.append(e.key)
        else:
            i = e.index
            if not (isinstance(i, N.Literal) and i.ktype == "long" and i.value is not None
                    and not isinstance(i.value, bool) and i.value >= 0):
                return None
            keys.append(int(i.value))
        e = e.obj
    if not isinstance(e, N.Name) or not keys:
        return None
    return e.name, tuple(reversed(keys))


def field_plan(op: N.MvExpand, following: list[N.Op], funcs: set[str]) -> list[Path] | None:
    """The element paths the operators after ``op`` read, or None when they need more
    than paths (see the module docstring)."""
    if len(op.items) != 1 or op.itemindex is not None or op.limit is not None:
        return None
    name, e, totype = op.items[0]
    nm = name or column_name(e)
    if nm is None or totype is not None:
        return None
    chain: list[N.Op] = []
    for nxt in following:
        chain.append(nxt)
        if isinstance(nxt, N.Summarize):
            break
        if not isinstance(nxt, (N.Where, N.Extend)):
            return None
    else:
        return None
    found: dict[str, list[Path]] = {nm: []}
    for nxt in chain:
        if isinstance(nxt, N.Extend) and any(
                (it.name or column_name(it.expr)) == nm
                or (it.name or "").lstrip("_").startswith("mvf_") for it in nxt.items):
            return None  # the column is redefined (or a name like the hidden ones)
        if not _collect(nxt, found, funcs, strict=True):
            return None
    return found[nm] or None


def column_paths(ops: list[N.Op], cols: list[str]) -> dict[str, list[Path]] | None:
    """``ops`` start with ``extend``s and then a ``summarize``: the paths they read below
    each of ``cols``, for the columns with two or more (read in one pass); else None."""
    n = 0
    while n < len(ops) and isinstance(ops[n], N.Extend):
        n += 1
    if n == len(ops) or not isinstance(ops[n], N.Summarize):
        return None
    found: dict[str, list[Path]] = {c: [] for c in cols}
    for nxt in ops[:n + 1]:
        if isinstance(nxt, N.Extend) and any(
                (it.name or column_name(it.expr)) in found
                or (it.name or "").lstrip("_").startswith("jpf_") for it in nxt.items):
            return None  # a column is redefined (or a name like the hidden ones)
        _collect(nxt, found, set(), strict=False)
    plan = {c: ps for c, ps in found.items() if len(ps) > 1}
    return plan or None


def _collect(node: Any, found: dict[str, list[Path]], funcs: set[str], *,
             strict: bool) -> bool:
    """Add the paths below the columns of ``found`` in ``node`` to their lists. With
    ``strict``, False when such a column is used otherwise (whole, under a computed key),
    or something may read it unseen (``*``, a user function)."""
    if isinstance(node, (N.Member, N.Index)):
        c = member_chain(node)
        if c is not None and c[0] in found:
            if c[1] not in found[c[0]]:
                found[c[0]].append(c[1])
            return True
    if isinstance(node, N.Name):
        return not strict or node.name not in found
    if strict and (isinstance(node, N.Star)
                   or (isinstance(node, N.Call) and node.name in funcs)):
        return False
    if isinstance(node, (list, tuple)):
        return all([_collect(x, found, funcs, strict=strict) for x in node])
    if isinstance(node, N.Node):
        return all([_collect(x, found, funcs, strict=strict) for x in N.children(node)])
    return True


def read_paths(paths: list[Path], names: list[str]) -> Any:
    """A batch function: JSON text -> a Struct of the texts at ``paths`` (fields
    ``names``), each read by ``json_path_match`` once per distinct text
    (:func:`distinct_index`, computed once for all the paths)."""
    jps = [_json_path(p) for p in paths]

    def batch(s: pl.Series) -> pl.Series:
        di = distinct_index(s)
        d = s if di is None else s.filter(di[0])
        out = pl.DataFrame([d.str.json_path_match(jp).alias(n)
                            for jp, n in zip(jps, names, strict=True)]).to_struct(s.name)
        return out if di is None else out.gather(di[1])

    return batch


_SLOW = object()  # a value json_path_match reads from the element's text


def _texts(vals: list[Any]) -> list[Any]:
    """Values at a path -> what ``json_path_match`` gives for them: strings as they are,
    integers and booleans as JSON writes them, null; ``_SLOW`` for the others (numbers
    with a fraction, arrays, bags)."""
    return [v if v is None or type(v) is str
            else str(v) if type(v) is int
            else ("true" if v else "false") if type(v) is bool
            else _SLOW for v in vals]


def _column(vals: list[Any], slow: set[int]) -> Any:
    """One field's values (one per element) as an Arrow string array; adds the elements
    whose value must be read from their text to ``slow`` (their entry is left null)."""
    import pyarrow as pa

    kinds = set(map(type, vals))
    if kinds <= {str, type(None)}:
        return pa.array(vals, pa.large_string())
    if kinds <= {int, type(None)}:
        try:
            return pa.array(vals, pa.int64()).cast(pa.large_string())
        except OverflowError:  # beyond int64: per value
            pass
    texts = _texts(vals)
    for i, v in enumerate(texts):
        if v is _SLOW:
            slow.add(i)
            texts[i] = None
    return pa.array(texts, pa.large_string())


#: what :func:`json_at` gives for a null text, a text that is not JSON, or a path to nothing
MISSING: Any = object()


def json_at(text: str | None, path: Path) -> Any:
    """The value at ``path`` (keys and array indexes) in the JSON ``text``, parsed with
    orjson; :data:`MISSING` when the text is null or not JSON or the path leads to nothing
    (a null on the way counts as nothing, as ``json_path_match`` gives)."""
    if text is None:
        return MISSING
    try:
        v = orjson.loads(text)
    except orjson.JSONDecodeError:
        return MISSING
    for k in path:
        if isinstance(k, int):
            v = v[k] if isinstance(v, list) and 0 <= k < len(v) else None
        else:
            v = v.get(k) if isinstance(v, dict) else None
        if v is None:
            return MISSING
    return v


def path_fields(path: Path, kind: str, fpaths: list[Path], names: list[str]) -> Any:
    """A batch function: JSON text -> per row, the list of its elements at ``path`` (as
    ``mv-expand`` expands them, ``kind`` for bags) as Structs of the texts at ``fpaths``
    (fields ``names``); each distinct text is read once (:func:`distinct_index`)."""
    jps = [_json_path(p) for p in fpaths]
    dtype = pl.List(pl.Struct({n: pl.String for n in names}))

    def elements(text: str | None) -> tuple[list[Any], str | None]:
        """(element values, or the text of a single element that is not a JSON array
        or bag; read by ``json_path_match``) -- the elements of ``_path_elements``."""
        v = json_at(text, path)
        if v is MISSING:
            return [None], None
        if isinstance(v, list):
            return v, None
        if isinstance(v, dict):
            if kind == "array":
                return [[k, x] for k, x in v.items()], None
            return [{k: x} for k, x in v.items()], None
        return [], v if isinstance(v, str) else orjson.dumps(v).decode()

    def build(d: pl.Series) -> pl.Series:
        import pyarrow as pa

        offsets = [0]
        elems: list[Any] = []
        raw: dict[int, str] = {}  # element number -> its text, when not a JSON structure
        for text in d.to_list():
            got, r = elements(text)
            if r is not None:
                raw[len(elems)] = r
                elems.append(None)
            else:
                elems += got
            offsets.append(len(elems))
        slow: set[int] = set()
        cols = []
        for fp in fpaths:
            vals = elems
            for k in fp:
                if isinstance(k, int):
                    vals = [x[k] if type(x) is list and k < len(x) else None for x in vals]
                else:
                    vals = [x.get(k) if type(x) is dict else None for x in vals]
            cols.append(_column(vals, slow))
        if slow or raw:
            # read as the general path does: json_path_match on the element's text
            at = sorted(slow | raw.keys())
            texts = pl.Series([raw[i] if i in raw else orjson.dumps(elems[i]).decode()
                               for i in at], dtype=pl.String)
            for j, jp in enumerate(jps):
                vals = pl.Series(cols[j]).scatter(at, texts.str.json_path_match(jp))
                cols[j] = vals.to_arrow().cast(pa.large_string())
        struct = pa.StructArray.from_arrays(cols, names=names)
        arr = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), struct)
        return pl.Series(arr).cast(dtype)

    def batch(s: pl.Series) -> pl.Series:
        di = distinct_index(s)
        if di is None:
            return build(s).alias(s.name)
        first, idx = di
        return build(s.filter(first)).gather(idx).alias(s.name)

    return batch
