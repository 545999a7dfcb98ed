"""URL cleaning, so paths and transitions read as pages rather than as raw URLs."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

#: Default page-type rules: (regular expression on the cleaned path, page type), first match
#: wins. Paths are lower-case, without scheme, host, query string or fragment, and a leading
#: locale segment (``/sv-se/``) is ignored. Anything else is typed by its first segment.
PAGE_TYPES: tuple[tuple[str, str], ...] = (
    (r"^/$", "home"),
    (r"^/(search|sok|suche)(/|$)", "search"),
    (r"^/(checkout|kassa)/(confirmation|thank-?you|receipt)(/|$)", "order confirmation"),
    (r"^/(checkout|kassa)(/|$)", "checkout"),
    (r"^/(basket|cart|varukorg)(/|$)", "basket"),
    (r"^/account/wishlist(/|$)", "wishlist"),
    (r"^/(account|my-?pages|login)(/|$)", "account"),
    (r"^/(shop|products?|p)/[^/]+/[^/]+(/|$)", "product"),
    (r"^/(shop|category|c)/[^/]+/?$", "category"),
    (r"^/(inspiration|blog|articles?|guides?|news)(/|$)", "article"),
)

_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_LOCALE = r"^/[a-z]{2}(-[a-z]{2})?(/|$)"


def _col(url: str | pl.Expr) -> pl.Expr:
    return pl.col(url) if isinstance(url, str) else url


def clean_url(
    url: str | pl.Expr = "PageUri",
    *,
    keep_host: bool = False,
    keep_query: bool = False,
    ids: str | None = ":id",
) -> pl.Expr:
    """A readable page path from a URL column (or expression).

    Drops the scheme and host (``keep_host=True`` keeps the host), the query string
    (``utm_*``, ``gclid``, search terms; ``keep_query=True`` keeps it) and the fragment,
    lower-cases, and replaces path segments that are ids (GUIDs, numbers, long hex) with
    ``ids`` (``None`` keeps them). ``https://shop.example/sv-se/order/12345/?utm_source=x``
    becomes ``/sv-se/order/:id/``. Empty URLs stay empty.
    """
    e = _col(url).cast(pl.String).fill_null("")
    if not keep_query:
        e = e.str.replace(r"[?#].*$", "")
    else:
        e = e.str.replace(r"#.*$", "")
    e = e.str.to_lowercase()
    host = e.str.extract(r"^[a-z][a-z0-9+.-]*://([^/]*)", 1)
    path = e.str.replace(r"^[a-z][a-z0-9+.-]*://[^/]*", "")
    path = pl.when((path == "") & host.is_not_null()).then(pl.lit("/")).otherwise(path)
    if ids is not None:
        for pattern in (_GUID, r"[0-9]+", r"[0-9a-f]{16,}"):
            path = path.str.replace_all(rf"/{pattern}(/|$)", f"/{ids}$1")
            # twice: the replacement consumed the separating slash of a following id
            path = path.str.replace_all(rf"/{pattern}(/|$)", f"/{ids}$1")
    if keep_host:
        return pl.concat_str([host.fill_null(""), path])
    return path


def page_type(
    url: str | pl.Expr = "PageUri",
    rules: Sequence[tuple[str, str]] = PAGE_TYPES,
    *,
    default: str | None = None,
) -> pl.Expr:
    """Map URLs to page types with ``(regex, type)`` rules on the cleaned path (first match
    wins; a leading locale segment like ``/sv-se/`` is ignored). Unmatched pages get
    ``default``, or their first path segment when ``default`` is None; empty URLs give ``""``.
    """
    path = clean_url(url).str.replace(_LOCALE, "/")
    fallback = (
        pl.lit(default)
        if default is not None
        else pl.coalesce(path.str.extract(r"^/([^/]+)", 1), pl.lit("(other)"))
    )
    out: pl.Expr = fallback
    for pattern, name in reversed(list(rules)):
        out = pl.when(path.str.contains(pattern)).then(pl.lit(name)).otherwise(out)
    return pl.when(_col(url).cast(pl.String).fill_null("") == "").then(pl.lit("")).otherwise(out)
