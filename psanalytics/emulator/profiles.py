"""Profile Store profiles, as the emulator serves them: ``GET api/v2.0/Profiles``.

The vendor documents ``GET /api/v1.0/profiles/?$filter=&$skip=&$top=&$orderBy=`` beside
TrackEvents with the same query parameters ("Filtering, paging and sorting"), and real
code filtered profiles with ``DeviceIds eq <guid>``. The emulator answers
``/api/v2.0/Profiles`` (and ``/api/v1.0/profiles``) as it answers TrackEvents: the same
auth, the same result window (``$skip + $top`` below 10,000, or at most 10,000 when the
emulator is lenient about the window), unknown query parameters ignored,
``{"items": [...], "total": N, "count": n}``.

What it serves: the profiles it was given (``Emulator(profiles=...)``: a file, API
objects or a profiles frame, see :func:`psanalytics.wire.profiles.read_profiles`), else
the profiles its events imply (:func:`psanalytics.wire.profiles.profiles_from_events`,
recomputed when the events change).

``$filter`` on profiles: ``ProfileId``, ``Name``, ``Scope``, ``ProfileManager`` (text),
``FirstSeen``, ``LastSeen``, ``UpdateTime`` (times, as for ``EventTime``), ``Visits``
(a number), ``DeviceIds`` and ``ContactInformation`` (lists: ``eq`` holds when any element
is equal, ``ne`` when none is), ``Info.<key>`` and ``Payload.<path>`` (as ``Payload``
paths on events); ``and``/``or``/``not``, the comparison operators, unquoted values.
``$orderby`` any of the scalar properties above (ties: ``ProfileId``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl
from odata_query import ast
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from psanalytics.emulator.paging import BadQuery, page_query
from psanalytics.query.odata import ODataError, _cmp, _Compiler, _Prop, parse_filter
from psanalytics.wire.profiles import PROFILE_SCHEMA, profiles_from_events, profiles_json_lines

__all__ = ["ProfilesService", "compile_profile_filter", "profile_orderby"]

_TEXT = ("ProfileId", "Name", "Scope", "ProfileManager")
_TIMES = ("FirstSeen", "LastSeen", "UpdateTime")
_LISTS = ("DeviceIds", "ContactInformation")
_JSONS = ("Info", "Payload")
_LOWER = {c.lower(): c for c in PROFILE_SCHEMA if c != "Extra"}
_ORDERABLE = (*_TEXT, *_TIMES, "Visits")
_KNOWN_TEXT = ", ".join([*_TEXT, *_TIMES, "Visits", *_LISTS, "Info.<key>", "Payload.<path>"])


@dataclass(frozen=True)
class _JsonProp(_Prop):
    """``Info.<key>`` / ``Payload.<path>``: a JSON text column read by path."""

    def expr(self) -> pl.Expr:
        jp = "$" + "".join(f".{p}" if re.fullmatch(r"\w+", p) else f"['{p}']" for p in self.path)
        return pl.col(self.column).str.json_path_match(jp)


class _ProfileCompiler(_Compiler):
    """The TrackEvents ``$filter`` compiler, with the profile's properties."""

    def operand(self, node: Any) -> tuple[_Prop | None, Any, pl.Expr | None]:
        if isinstance(node, ast.Identifier):
            parts = (*node.namespace, node.name)
            root = _LOWER.get(parts[0].lower())
            name = ".".join(parts)
            if root in _JSONS and len(parts) > 1:
                return _JsonProp("payload", name, root, tuple(parts[1:])), None, None
            if root is not None and len(parts) == 1:
                kind = ("time" if root in _TIMES else "list" if root in _LISTS
                        else "number" if root == "Visits" else "payload_root" if root in _JSONS else "text")
                return _Prop(kind, root, root), None, None
            raise self.err(f"unknown profile property {name} (known: {_KNOWN_TEXT})", parts[0])
        if isinstance(node, ast.Call):
            raise self.unsupported_function(node.func.full_name())
        return super().operand(node)

    def compare_values(self, prop: _Prop, pexpr: pl.Expr | None, op: str, lit: Any) -> pl.Expr:
        if lit is None:
            raise self.err(f"{prop.name} must be compared with a value")
        col = pl.col(prop.column)
        if prop.kind == "payload_root":
            if lit.kind != "null" or op not in ("eq", "ne"):
                raise self.err(f"{prop.name} itself can only be compared with null "
                               f"(use a path such as {prop.name}.Email)", prop.name)
            return col.is_null() if op == "eq" else col.is_not_null()
        if prop.kind == "list":
            if op not in ("eq", "ne"):
                raise self.err(f"{prop.name} is a list: compare it with eq or ne", prop.name)
            value = lit.value if lit.kind == "guid" else (str(lit.value) if lit.kind in ("string", "ident")
                                                          else lit.text)
            elems = col.list.eval(pl.element().str.to_lowercase() if lit.kind == "guid" else pl.element())
            hit = elems.list.contains(value).fill_null(False)
            return hit if op == "eq" else ~hit
        if prop.kind == "number":
            if lit.kind == "null":
                return col.is_null() if op == "eq" else col.is_not_null()
            if lit.kind not in ("int", "float"):
                raise self.err(f"{prop.name} is a number: compare it with a number, not {lit.text}", prop.name)
            return _cmp(col.cast(pl.Float64), op, float(lit.value)).fill_null(False)
        if prop.kind == "text":
            if lit.kind == "null":
                return col.is_null() if op == "eq" else col.is_not_null()
            return super().compare_values(_Prop("string", prop.name, prop.column), None, op, lit).fill_null(False)
        return super().compare_values(prop, pexpr, op, lit)


def compile_profile_filter(text: str, *, lenient: bool = False) -> pl.Expr:
    """Profiles ``$filter`` text -> a boolean Polars expression over the profiles frame
    (see the module doc for the properties). :class:`ODataError` on a bad filter."""
    return _ProfileCompiler(text, lenient).visit(parse_filter(text)).fill_null(False)


def profile_orderby(text: str | None) -> list[tuple[str, bool]]:
    """``"LastSeen desc, Name"`` -> ``[("LastSeen", True), ("Name", False)]``; the
    properties a profile is ordered by (:data:`_ORDERABLE`), any case."""
    out: list[tuple[str, bool]] = []
    if text is None or not text.strip():
        return out
    for term in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)(?:\s+(asc|desc))?\s*", term, re.IGNORECASE)
        name = _LOWER.get(m.group(1).lower()) if m else None
        if not m or name not in _ORDERABLE:
            raise ODataError(f"cannot order profiles by {term.strip()!r} (use one of "
                             f"{', '.join(_ORDERABLE)}, with asc or desc)", text=text, what="$orderby")
        out.append((name, (m.group(2) or "asc").lower() == "desc"))
    return out


class ProfilesService:
    """The profiles the emulator serves and the query over them.

    ``events``: a callable giving the visible events (profiles are derived from them when
    ``profiles`` is None), and ``version`` one that changes whenever they change."""

    def __init__(self, events: Callable[[], pl.DataFrame], version: Callable[[], Any],
                 profiles: pl.DataFrame | None = None) -> None:
        self._events = events
        self._version = version
        self.loaded = profiles
        self._lock = threading.Lock()
        self._cache: tuple[Any, pl.DataFrame, list[str]] | None = None

    def frame(self) -> pl.DataFrame:
        """Every profile served now (given, or derived from the events)."""
        return self._current()[0]

    def _current(self) -> tuple[pl.DataFrame, list[str]]:
        key = "loaded" if self.loaded is not None else self._version()
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1], self._cache[2]
        frame = self.loaded if self.loaded is not None else profiles_from_events(self._events())
        lines = profiles_json_lines(frame)
        with self._lock:
            self._cache = (key, frame, lines)
        return frame, lines

    def query(self, ftext: str | None, orderby: list[tuple[str, bool]], skip: int, top: int,
              *, lenient: bool = False) -> bytes:
        """One page's body: ``{"items": [...], "total": N, "count": n}``."""
        frame, lines = self._current()
        idx = frame.select(pl.all().exclude("Extra")).with_row_index("_row")
        if ftext:
            idx = idx.filter(compile_profile_filter(ftext, lenient=lenient))
        keys = [c for c, _ in orderby]
        desc = [d for _, d in orderby]
        if "ProfileId" not in keys:  # a total order: ties by ProfileId
            keys.append("ProfileId")
            desc.append(desc[0] if desc else False)
        idx = idx.sort(keys, descending=desc, nulls_last=False, maintain_order=True)
        total = idx.height
        rows = idx.get_column("_row").slice(skip, top).to_list()
        items = b",".join(lines[r].encode() for r in rows)
        return b'{"items":[' + items + b'],"total":' + str(total).encode() + b',"count":' + \
            str(len(rows)).encode() + b"}"

    async def get(self, request: Request, *, lenient: bool, lenient_window: bool) -> Response:
        """``GET api/v2.0/Profiles`` (auth checked by the caller)."""
        try:
            page = page_query(request, lenient_window=lenient_window)
        except BadQuery as exc:
            return _error(400, str(exc))
        ftext = (page.filter or "").strip() or None
        skip, top = page.skip, page.top
        try:
            orderby = profile_orderby(page.orderby)
            body = await run_in_threadpool(self.query, ftext, orderby, skip, top, lenient=lenient)
        except ODataError as exc:
            return _error(400, str(exc))
        return Response(body, media_type="application/json; charset=utf-8")


def _error(status: int, message: str) -> Response:
    code = {400: "BadRequest"}.get(status, "Error")
    return Response(orjson.dumps({"error": {"code": code, "message": message}}), status_code=status,
                    media_type="application/json")
