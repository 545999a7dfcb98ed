"""Static side of the engine: KQL types, the mapping from Polars dtypes, the function and
aggregate catalogue (for "did you mean"), output-column naming rules, and ``check()``
(parse + type-check a query against table schemas without touching data)."""

from __future__ import annotations

import polars as pl

from psanalytics.query.kql import nodes as N

KTYPES = ("string", "long", "real", "bool", "datetime", "timespan", "dynamic")

from psanalytics.query.kql.types import SPAN_DTYPE, TIME_DTYPE  # noqa: E402,F401

#: Columns that hold JSON text and are typed ``dynamic`` in KQL (null: absent).
DYNAMIC_TEXT_COLUMNS = frozenset({"Payload", "Headers", "Extras"})

CONVERSIONS = frozenset({
    "tostring", "toint", "tolong", "toreal", "todouble", "todecimal", "tobool", "toboolean",
    "todatetime", "totimespan", "todynamic", "parse_json", "toguid",
})

SCALAR_FUNCTIONS = (
    "now", "ago", "todatetime", "totimespan", "startofday", "endofday", "startofweek",
    "endofweek", "startofmonth", "endofmonth", "startofyear", "endofyear", "bin", "floor",
    "bin_at", "dayofweek", "dayofmonth", "dayofyear", "hourofday", "getmonth", "getyear",
    "monthofyear", "datetime_part", "format_datetime", "tostring", "tolower", "toupper",
    "strlen", "substring", "strcat", "strcat_delim", "trim", "trim_start", "trim_end",
    "replace_string", "split", "indexof", "toint", "tolong", "toreal", "todouble",
    "tobool", "toboolean", "isempty", "isnotempty", "isnull", "isnotnull", "iff", "iif",
    "coalesce", "parse_json", "todynamic", "extract", "not", "abs", "round", "sqrt",
    "exp", "log", "log10", "pow", "array_length", "case", "countof", "reverse",
    "isnan", "isinf", "min_of", "max_of", "datetime_diff", "datetime_add", "datetime_part",
    "week_of_year", "string_size", "unixtime_seconds_todatetime",
    "unixtime_milliseconds_todatetime", "unixtime_microseconds_todatetime",
    "unixtime_nanoseconds_todatetime",
)
AGGREGATES = (
    "count", "countif", "dcount", "dcountif", "count_distinct", "sum", "sumif", "avg",
    "avgif", "min", "max", "minif", "maxif", "arg_max", "arg_min", "take_any", "any",
    "make_set", "make_list", "make_set_if", "make_list_if", "percentile", "stdev",
    "variance",
)
#: Valid KQL functions that the local engine does not implement.
UNSUPPORTED_FUNCTIONS = (
    "hash", "hash_sha256", "parse_url", "parse_urlquery", "url_decode", "url_encode",
    "base64_encode_tostring", "base64_decode_tostring", "geo_distance_2points", "row_number",
    "prev", "next", "row_cumsum", "series_stats", "bag_keys", "bag_pack", "pack", "pack_all",
    "pack_array", "zip", "set_union", "set_intersect", "array_concat", "array_slice",
    "make_bag", "buildschema", "percentiles", "tdigest", "hll", "dcount_hll", "hll_merge",
    "make_datetime", "make_timespan", "todecimal", "toguid", "new_guid", "rand", "gettype",
    "typeof", "extract_all", "parse_path", "ipv4_is_in_range", "toscalar", "materialize",
    "column_ifexists", "current_cluster_endpoint", "cursor_after", "ingestion_time",
    "estimate_data_size", "bitset_count_ones", "binary_and", "binary_or",
    "series_decompose", "welch_test", "tohex", "strrep", "make_string",
    "to_utf8", "unicode_codepoints_from_string", "regex_quote", "has_any_index",
    "array_sort_asc", "array_sort_desc", "array_index_of", "array_sum", "bag_merge",
    "bag_remove_keys", "arg_max_if", "sum_if", "percentilew", "stdevif", "varianceif",
    "strcmp", "parse_csv", "parse_xml", "format_timespan", "isascii", "isutf8", "translate",
    "repeat", "bin_auto", "array_iff", "array_split", "array_reverse", "ipv4_compare",
    "parse_ipv4", "parse_user_agent", "parse_version", "punycode_from_string",
    "has_ipv4", "hourofday_utc", "todatetime_utc", "binary_xor", "binary_not", "exp2",
    "exp10", "log2", "gamma", "sign", "rand", "ceiling", "cot", "degrees", "radians",
    "isfinite", "datatable", "current_principal", "cursor_current", "extent_id",
    "extent_tags", "ingestion_time", "getschema", "now_utc", "countif_", "avg_if",
    "dcount_if", "make_bag_if", "sumif_", "binary_shift_left", "binary_shift_right",
    "substring_index", "split_ex", "extractjson", "extract_json", "tolong_or",
)

RENDER_KINDS = (
    "table", "timechart", "linechart", "barchart", "columnchart", "piechart", "areachart",
    "scatterchart", "stackedareachart", "anomalychart", "card", "pivotchart", "ladderchart",
    "timepivot", "treemap", "plotly",
)


def ktype_of(name: str, dtype: pl.DataType) -> str:
    """KQL type of a Polars column (``Payload`` JSON text and Struct/List -> dynamic)."""
    if name in DYNAMIC_TEXT_COLUMNS and dtype == pl.String:
        return "dynamic"
    if isinstance(dtype, (pl.Struct, pl.List, pl.Array, pl.Object)):
        return "dynamic"
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "long"
    if dtype.is_float() or dtype.is_decimal():
        return "real"
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return "datetime"
    if isinstance(dtype, pl.Duration):
        return "timespan"
    if dtype == pl.Null:
        return "dynamic"
    return "dynamic"


# ------------------------------------------------------------------------- naming


def path_name(e: N.Expr) -> str | None:
    """``Payload.epi.language`` -> ``Payload_epi_language``; a column -> its name."""
    if isinstance(e, N.Name):
        return e.name
    if isinstance(e, N.Member):
        base = path_name(e.obj)
        return None if base is None else f"{base}_{e.key}"
    if isinstance(e, N.Index) and isinstance(e.index, N.Literal):
        base = path_name(e.obj)
        return None if base is None else f"{base}_{e.index.value}"
    return None


def column_name(e: N.Expr) -> str | None:
    """Name an unnamed ``project``/``extend`` item takes (None -> ``ColumnN``)."""
    p = path_name(e)
    if p is not None:
        return p
    if isinstance(e, N.Call) and e.name in CONVERSIONS and len(e.args) == 1:
        return column_name(e.args[0])
    return None


def arg_name(e: N.Expr) -> str:
    """The column name an aggregate's argument contributes (``""`` when compound)."""
    p = path_name(e)
    if p is not None:
        return p
    if isinstance(e, N.Call):
        names = [n for n in (_single_ref(a) for a in e.args) if n]
        refs = {n for n in names}
        if len(refs) == 1:
            return names[0]
    return ""


def _single_ref(e: N.Expr) -> str | None:
    p = path_name(e)
    if p is not None:
        return p
    if isinstance(e, N.Call):
        names = {n for n in (_single_ref(a) for a in e.args) if n}
        if len(names) == 1:
            return names.pop()
    return None


def aggregate_name(call: N.Call) -> str | None:
    """Auto name of an aggregate call per the Kusto rules (None for arg_max/arg_min)."""
    f = call.name
    a = call.args
    first = arg_name(a[0]) if a and not isinstance(a[0], N.Star) else ""
    if f == "count":
        return "count_" + first
    if f in ("countif",):
        return "countif_"
    if f == "make_set" or f == "make_set_if":
        return "set_" + first
    if f == "make_list" or f == "make_list_if":
        return "list_" + first
    if f == "percentile":
        pct = ""
        if len(a) > 1 and isinstance(a[1], N.Literal):
            v = a[1].value
            pct = str(v).replace(".", "_") if v is not None else ""
        return f"percentile_{first}_{pct}"
    if f == "any":
        return "any_" + first
    if f == "take_any":
        return first or "take_any_"
    return f"{f}_{first}"

