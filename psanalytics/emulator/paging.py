"""The query parameters the paged GET routes read (TrackEvents, Profiles): ``$filter``,
``$orderby``, ``$skip``, ``$top``, checked against the result window.

The limits are the emulator's own copy of ``shared/spec/apis.md`` (see ``app.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

__all__ = ["WINDOW", "DEFAULT_TOP", "BadQuery", "PageQuery", "page_query"]

WINDOW = 10_000
DEFAULT_TOP = 100
#: The query parameters read (lower case); any other is ignored.
_QUERY_PARAMS = frozenset({"$filter", "$orderby", "$skip", "$top"})


class BadQuery(Exception):
    """A query string the API answers 400 for (the message is the answer's)."""


@dataclass(frozen=True)
class PageQuery:
    filter: str | None
    orderby: str | None
    skip: int
    top: int


def page_query(request: Request, *, lenient_window: bool) -> PageQuery:
    """The page a request asks for, or :class:`BadQuery`. ``lenient_window`` allows
    ``$skip + $top == 10000`` (see ``Emulator``)."""
    q: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        lk = k.lower()
        if lk not in _QUERY_PARAMS:
            # ASP.NET ignores parameters an action does not bind, and shipped callers
            # sent some (appKey=..., a bare 0): answered as if they were not there.
            continue
        if lk in q:
            raise BadQuery(f"query parameter {k} given more than once")
        q[lk] = v
    try:
        skip = int(q.get("$skip", "0"))
        top = int(q.get("$top", str(DEFAULT_TOP)))
    except ValueError:
        raise BadQuery(f"$skip and $top must be integers (got $skip={q.get('$skip')!r}, "
                       f"$top={q.get('$top')!r})") from None
    if skip < 0 or top < 0:
        raise BadQuery("$skip and $top must not be negative")
    if not (skip + top <= WINDOW if lenient_window else skip + top < WINDOW):
        bound = f"at most {WINDOW:,}" if lenient_window else f"less than {WINDOW:,}"
        raise BadQuery(f"the result window is too large: $skip + $top = {skip + top:,} must be "
                       f"{bound} (skip={skip}, top={top})")
    return PageQuery(q.get("$filter"), q.get("$orderby"), skip, top)
