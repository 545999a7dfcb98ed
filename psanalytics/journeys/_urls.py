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


def _clean(e: pl.Expr, keep_host: bool, keep_query: bool, ids: str | None) -> pl.Expr:
    e = e.cast(pl.String).fill_null("")
    e = e.str.replace(r"[?#].*$" if not keep_query else r"#.*$", "")
    e = e.str.to_lowercase()
    host = e.str.extract(r"^[a-z][a-z0-9+.-]*://([^/]*)", 1)
    path = e.str.replace(r"^[a-z][a-z0-9+.-]*://[^/]*", "")
    path = pl.when((path == "") & host.is_not_null()).then(pl.lit("/")).otherwise(path)
    if ids is not None:
        for pattern in (_GUID, r"[0-9]+", r"[0-9a-f]{16,}"):
            # twice: a replacement consumes the slash that separates it from the next id
            path = path.str.replace_all(rf"/{pattern}(/|$)", f"/{ids}$1")
            path = path.str.replace_all(rf"/{pattern}(/|$)", f"/{ids}$1")
    if keep_host:
        return pl.concat_str([host.fill_null(""), path])
    return path


def _per_distinct(url: str | pl.Expr, fn) -> pl.Expr:  # noqa: ANN001
    """Apply ``fn`` (an expression builder over column ``u``) once per distinct URL."""

    def run(s: pl.Series) -> pl.Series:
        uniq = s.cast(pl.String).unique().to_frame("u")
        mapped = uniq.select(pl.col("u"), fn(pl.col("u")).alias("v"))
        return s.cast(pl.String).replace_strict(mapped["u"], mapped["v"], return_dtype=pl.String)

    return _col(url).map_batches(run, return_dtype=pl.String)


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
    becomes ``/sv-se/order/:id/``. Empty URLs stay empty. Each distinct URL is cleaned once.
    """
    return _per_distinct(url, lambda u: _clean(u, keep_host, keep_query, ids))


def page_type(
    url: str | pl.Expr = "PageUri",
    rules: Sequence[tuple[str, str]] = PAGE_TYPES,
    *,
    default: str | None = None,
) -> pl.Expr:
    """Map URLs to page types with ``(regex, type)`` rules on the cleaned path (first match
    wins; a leading locale segment like ``/sv-se/`` is ignored). Unmatched pages get
    ``default``, or their first path segment when ``default`` is None; empty URLs give ``""``.
    Each distinct URL is typed once.
    """
    rules = list(rules)

    def typed(u: pl.Expr) -> pl.Expr:
        return pl.struct(
            u.alias("u"), _clean(u, False, False, ":id").str.replace(_LOCALE, "/").alias("p")
        ).map_batches(lambda st: _types(st, rules, default), return_dtype=pl.String)

    return _per_distinct(url, typed)


def _types(st: pl.Series, rules: list[tuple[str, str]], default: str | None) -> pl.Series:
    df = st.struct.unnest()
    path = pl.col("p")
    fallback = (
        pl.lit(default)
        if default is not None
        else pl.coalesce(path.str.extract(r"^/([^/]+)", 1), pl.lit("(other)"))
    )
    out: pl.Expr = fallback
    for pattern, name in reversed(rules):
        out = pl.when(path.str.contains(pattern)).then(pl.lit(name)).otherwise(out)
    out = pl.when(pl.col("u").fill_null("") == "").then(pl.lit("")).otherwise(out)
    return df.select(out.alias("t")).to_series()
