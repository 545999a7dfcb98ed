"""``parse`` and ``parse-where``: one regex built from the pattern, its groups extracted
and typed as the reference documents (simple, regex and relaxed kinds). A mixin of
:class:`~psanalytics.query.kql.compiler.Compiler`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import polars as pl

from psanalytics.query.kql import nodes as N
from psanalytics.query.kql.errors import KqlUnsupported
from psanalytics.query.kql.types import _DTYPES, NUMERIC, Table

if TYPE_CHECKING:  # pragma: no cover
    from psanalytics.query.kql.compiler import Compiler


def parse_pattern(op: N.Parse) -> tuple[str, list[tuple[str, str, int]]]:
    """The regex of a ``parse``/``parse-where`` and its typed columns (name, Kusto type,
    capture group number), following the reference: ``simple`` anchors at both ends and
    matches ``*`` lazily except last; ``regex`` is the pattern as written (greedy unless
    ``flags=U``); ``relaxed`` lets a number column take what is there instead."""
    kind = op.kind or "simple"
    regex_kind = kind == "regex"
    flags = ""
    if op.flags:
        # Kusto's regex flags: i (case), m (multi-line), s (. matches \n), U (ungreedy)
        fl = "".join(ch for ch in dict.fromkeys(op.flags) if ch in "imsU")
        flags = f"(?{fl})" if fl else ""
    pattern = "^" if not regex_kind else ""
    cols: list[tuple[str, str, int]] = []
    groups = 0  # capture groups so far (a regex literal may hold its own)
    parts = op.parts
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(p, str):
            pattern += p if regex_kind else re.escape(p)
            if regex_kind:
                try:
                    groups += re.compile(p).groups
                except re.error:
                    pass  # the whole pattern is checked below
        elif p[0] == "*":
            # regex mode is greedy unless flags=U (the reference's examples)
            pattern += ".*" if last or regex_kind else ".*?"
        else:
            name, ktype = p
            kq = {"int": "long"}.get(ktype or "string", ktype or "string")
            if kq == "long":
                g = r"-?\d+"
            elif kq == "real":
                g = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
            else:
                g = ".*" if last or regex_kind else ".*?"
            if kind == "relaxed" and kq in ("long", "real"):
                # relaxed: the number if there is one, else up to the next delimiter
                # (a value of the wrong type becomes null)
                g += "|.*" if last else "|.*?"
            pattern += f"({g})"
            groups += 1
            cols.append((name, kq, groups))
    if regex_kind:
        pattern = flags + pattern
    else:
        pattern = flags + pattern + ("$" if isinstance(parts[-1], tuple) else "")
    return pattern, cols


class ParseOps:
    def op_parse(self: Compiler, op: N.Parse, t: Table) -> Table:
        v = self.scalar(op.expr, t)
        text = self.stringish(v, op.expr) if v.ktype in ("string", "dynamic") else \
            self.expr(N.Call("tostring", [op.expr]), t).expr
        pattern, cols = parse_pattern(op)
        kind = op.kind or "simple"
        try:
            pl.select(pl.lit("").str.contains(pattern))
        except pl.exceptions.PolarsError as exc:
            raise self.sem(f"invalid parse pattern: {str(exc).splitlines()[0]}", op) from None
        matched = text.str.contains(pattern)
        exprs = []
        schema = dict(t.schema)
        for name, kq, gi in cols:
            g = text.str.extract(pattern, gi)
            if kq == "string":
                e = g.fill_null("")
            elif kq in NUMERIC or kq == "bool":
                e = g.cast(_DTYPES[kq], strict=False)
            elif kq == "datetime":
                from psanalytics.schema import parse_time_expr

                # ISO 8601, or the US form the reference's parse examples use
                # (02/17/2016 08:40:01)
                us = g.str.strip_chars().str.to_datetime(
                    "%m/%d/%Y %H:%M:%S", time_unit="ns", time_zone="UTC", strict=False)
                e = pl.coalesce(parse_time_expr(g), us)
            elif kq == "dynamic":
                e = g
            else:
                raise self.sem(f"parse into {kq} is not supported locally", op,
                               cls=KqlUnsupported)
            exprs.append(e.alias(name))
            schema[name] = kq
        # simple and regex: every typed column must convert, or the row does not match
        # (parse: all its columns empty; parse-where: the row is dropped)
        ok = matched.fill_null(False)
        for (_n, kq, _), e in zip(cols, exprs, strict=True):
            if kq not in ("string", "dynamic"):
                ok = ok & e.is_not_null()
        lf = t.lf
        if op.where:
            lf = lf.filter(ok)
        elif kind != "relaxed":
            exprs = [pl.when(ok).then(e).otherwise(pl.lit("" if kq == "string" else None))
                     .alias(name) for (name, kq, _), e in zip(cols, exprs, strict=True)]
        lf = lf.with_columns(exprs)
        return Table(lf, schema, {}, t.ordered)
