"""Reading Profile Store profiles (``GET api/v2.0/Profiles``) exactly, past the 10,000 window.

The Profiles API takes the same ``$filter``/``$orderby``/``$skip``/``$top`` as
TrackEvents under the same result window (the vendor's "Filtering, paging and sorting"
page documents both endpoints together), so the same engine pages it: a
:class:`~psanalytics.api._paging.Pager` over the :data:`PROFILES` resource, whose windows
cut ``FirstSeen`` (set once, when the profile is created: a profile updated while it is
read stays in its window, which ``LastSeen``/``UpdateTime`` would not) with ties broken by
``ProfileId``. Every window keeps ``$skip + $top`` at most 9,999; a window holding more
is split; one ``FirstSeen`` instant with more than 9,999 profiles is a clear
:class:`~psanalytics.api.windows.WindowOverflowError`.

Profiles without ``FirstSeen`` (the API's create call does not require it) fall outside
every time window: with no ``start``/``end`` they are fetched after the windows by
``FirstSeen eq null``, ordered by ``ProfileId`` (at most 9,999 such profiles; more raise
:class:`ProfilesError` rather than return a part).

:meth:`psanalytics.api.profile_store.ProfileStore.profiles` is the entry users call.
"""

from __future__ import annotations

import polars as pl

from psanalytics.api._paging import FilterLike, Pager, Resource, TimeLike, _filter_text
from psanalytics.api.windows import RESULT_WINDOW
from psanalytics.errors import PsaError
from psanalytics.wire.profiles import (
    PROFILE_COLUMNS,
    empty_profiles,
    parse_profiles_page,
    profiles_json_lines,
)

__all__ = ["PROFILES", "PROFILES_PATH", "ProfilesError", "fetch_profiles"]

PROFILES_PATH = "/api/v2.0/Profiles"


class ProfilesError(PsaError):
    """Profiles cannot be read exactly (e.g. too many without ``FirstSeen``)."""


def _identity(frame: pl.DataFrame) -> pl.Series:
    """Each profile's whole-row identity at a page seam: its API JSON text."""
    return pl.Series("identity", profiles_json_lines(frame), pl.String)


#: Profiles (``GET api/v2.0/Profiles``), windowed on ``FirstSeen``, ties by ``ProfileId``.
PROFILES = Resource(PROFILES_PATH, "FirstSeen", "ProfileId", parse_profiles_page, _identity,
                    empty_profiles, noun="profiles")


def _and(text: str | None, cond: str) -> str:
    return cond if not text else f"({text}) and {cond}"


def fetch_profiles(pager: Pager, filter: FilterLike = None, *, start: TimeLike | None = None,
                   end: TimeLike | None = None, orderby: str | None = None, limit: int | None = None,
                   progress: bool | None = None, concurrency: int | None = None) -> pl.DataFrame:
    """Every profile matching ``filter`` with ``start <= FirstSeen < end``, exactly once
    (see :meth:`ProfileStore.profiles <psanalytics.api.profile_store.ProfileStore.profiles>`)."""
    ftext = _filter_text(filter)
    if start is None and end is None:
        dated = pager.events(_and(ftext, "FirstSeen ne null"), progress=progress, concurrency=concurrency)
        undated, total = pager._get(_and(ftext, "FirstSeen eq null"), 0, RESULT_WINDOW, None,
                                    orderby="ProfileId asc")
        if total > undated.height:
            raise ProfilesError(
                f"GET {PROFILES_PATH} $filter={_and(ftext, 'FirstSeen eq null')}: {total:,} profiles have "
                f"no FirstSeen, more than one query returns ({RESULT_WINDOW:,}); they cannot be paged "
                "exactly. Narrow the filter (e.g. by Scope or Name).")
        out = pl.concat([dated, undated], how="vertical") if undated.height else dated
    else:
        out = pager.events(ftext, start=start, end=end, progress=progress, concurrency=concurrency)
    out = out.select(PROFILE_COLUMNS)
    if orderby is not None:
        from psanalytics.api._paging import _client_order

        out = _client_order(out, orderby)
    return out.head(limit) if limit is not None else out
