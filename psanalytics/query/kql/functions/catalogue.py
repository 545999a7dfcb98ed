"""The function catalogue, computed from the registries: what is implemented
(:data:`SCALAR_FUNCTIONS`, :data:`AGGREGATES`) and which valid KQL functions the local
engine knows of but does not run (:data:`UNSUPPORTED_FUNCTIONS`: a call to one raises
``KqlUnsupported`` instead of "unknown function"). Only :data:`KNOWN_KQL_FUNCTIONS` is
written by hand: names from the Kusto reference; an entry that gets implemented simply
drops out of the unsupported set."""

from __future__ import annotations

from psanalytics.query.kql.functions import (  # noqa: F401 - each module registers itself
    aggregates,
    dynamic,
    formats,
    hashes,
    logic,
    strings,
    time,
    window,
)
from psanalytics.query.kql.functions._base import AGG_IMPLS, FUNC_IMPLS

#: Valid KQL function names (from the Kusto reference) that are not all implemented here.
KNOWN_KQL_FUNCTIONS = frozenset({
    "arg_max_if", "array_concat", "array_iff", "array_index_of", "array_reverse",
    "array_slice", "array_sort_asc", "array_sort_desc", "array_split", "array_sum",
    "avg_if", "bag_keys", "bag_merge", "bag_pack", "bag_remove_keys",
    "base64_decode_tostring", "base64_encode_tostring", "bin_auto", "binary_and",
    "binary_not", "binary_or", "binary_shift_left", "binary_shift_right", "binary_xor",
    "bitset_count_ones", "buildschema", "ceiling", "column_ifexists", "cot",
    "current_cluster_endpoint", "current_principal", "cursor_after", "cursor_current",
    "dcount_hll", "dcount_if", "degrees", "estimate_data_size", "exp10", "exp2",
    "extent_id", "extent_tags", "extract_all", "extract_json", "extractjson",
    "format_timespan", "gamma", "geo_distance_2points", "gettype", "has_any_index",
    "has_ipv4", "hash", "hash_sha256", "hll", "hll_merge", "hourofday_utc",
    "ingestion_time", "ipv4_compare", "ipv4_is_in_range", "isascii", "isfinite",
    "isutf8", "log2", "make_bag", "make_bag_if", "make_datetime", "make_string",
    "make_timespan", "new_guid", "next", "now_utc", "pack", "pack_all", "pack_array",
    "parse_csv", "parse_ipv4", "parse_path", "parse_url", "parse_urlquery",
    "parse_user_agent", "parse_version", "parse_xml", "percentiles", "percentilew",
    "prev", "punycode_from_string", "radians", "rand", "regex_quote", "repeat",
    "row_cumsum", "row_number", "series_decompose", "series_stats", "set_intersect",
    "set_union", "sign", "split_ex", "stdevif", "strcmp", "strrep", "substring_index",
    "sum_if", "tdigest", "to_utf8", "todatetime_utc", "todecimal", "toguid", "tohex",
    "tolong_or", "translate", "typeof", "unicode_codepoints_from_string", "url_decode",
    "url_encode", "varianceif", "welch_test", "zip"
})


#: Scalar functions the local engine runs (the registry's names, aliases included).
SCALAR_FUNCTIONS: frozenset[str] = frozenset(FUNC_IMPLS)
#: Aggregates the local engine runs (only inside ``summarize`` and friends).
#: ``arg_max``/``arg_min``/``percentiles`` return several columns: summarize compiles them
#: itself (``percentiles`` through ``aggregates.percentile_columns``).
MULTI_COLUMN_AGGREGATES = frozenset({"arg_max", "arg_min", "percentiles"})
AGGREGATES: frozenset[str] = frozenset(AGG_IMPLS) | MULTI_COLUMN_AGGREGATES
#: Valid KQL functions the local engine does not run (a call raises KqlUnsupported).
UNSUPPORTED_FUNCTIONS: frozenset[str] = KNOWN_KQL_FUNCTIONS - SCALAR_FUNCTIONS - AGGREGATES
