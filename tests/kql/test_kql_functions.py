"""Scalar functions and aggregates added for issue 14, pinned to the Kusto reference's own
examples (the format elements' example columns of format_datetime/format_timespan, the
hash pages' values) and to material nobody here wrote (zstd's frame checksum is the low
32 bits of xxHash64)."""

from __future__ import annotations

import uuid

import pytest
import zstandard

from psanalytics.query.kql import KqlSemanticError, KqlUnsupported, kql
from psanalytics.query.kql.functions import SCALAR_FUNCTIONS, UNSUPPORTED_FUNCTIONS
from psanalytics.query.kql.functions.hashes import xxh64


def one(query: str) -> tuple:
    rows = kql(query).rows()
    assert len(rows) == 1
    return rows[0]


# ------------------------------------------------------------------ format_datetime

#: format_datetime()'s "Supported format elements" table: (value, element, output)
DATETIME_ELEMENTS = [
    ("2009-06-01T13:45:30", "d", "1"), ("2009-06-15T13:45:30", "d", "15"),
    ("2009-06-01T13:45:30", "dd", "01"), ("2009-06-15T13:45:30", "dd", "15"),
    ("2009-06-15T13:45:30.6170000", "f", "6"), ("2009-06-15T13:45:30.05", "f", "0"),
    ("2009-06-15T13:45:30.6170000", "ff", "61"), ("2009-06-15T13:45:30.0050000", "ff", "00"),
    ("2009-06-15T13:45:30.617", "fff", "617"), ("2009-06-15T13:45:30.0005", "fff", "000"),
    ("2009-06-15T13:45:30.6175000", "ffff", "6175"),
    ("2009-06-15T13:45:30.0000500", "ffff", "0000"),
    ("2009-06-15T13:45:30.6175400", "fffff", "61754"),
    ("2009-06-15T13:45:30.000005", "fffff", "00000"),
    ("2009-06-15T13:45:30.6175420", "ffffff", "617542"),
    ("2009-06-15T13:45:30.0000005", "ffffff", "000000"),
    ("2009-06-15T13:45:30.6175425", "fffffff", "6175425"),
    ("2009-06-15T13:45:30.0001150", "fffffff", "0001150"),
    ("2009-06-15T13:45:30.6170000", "F", "6"), ("2009-06-15T13:45:30.0500000", "F", ""),
    ("2009-06-15T13:45:30.6170000", "FF", "61"), ("2009-06-15T13:45:30.0050000", "FF", ""),
    ("2009-06-15T13:45:30.6170000", "FFF", "617"), ("2009-06-15T13:45:30.0005000", "FFF", ""),
    ("2009-06-15T13:45:30.5275000", "FFFF", "5275"),
    ("2009-06-15T13:45:30.0000500", "FFFF", ""),
    ("2009-06-15T13:45:30.6175400", "FFFFF", "61754"),
    ("2009-06-15T13:45:30.0000050", "FFFFF", ""),
    ("2009-06-15T13:45:30.6175420", "FFFFFF", "617542"),
    ("2009-06-15T13:45:30.0000005", "FFFFFF", ""),
    ("2009-06-15T13:45:30.6175425", "FFFFFFF", "6175425"),
    ("2009-06-15T13:45:30.0001150", "FFFFFFF", "000115"),
    ("2009-06-15T01:45:30", "h", "1"), ("2009-06-15T13:45:30", "h", "1"),
    ("2009-06-15T01:45:30", "hh", "01"), ("2009-06-15T13:45:30", "hh", "01"),
    ("2009-06-15T01:45:30", "H", "1"), ("2009-06-15T13:45:30", "H", "13"),
    ("2009-06-15T01:45:30", "HH", "01"), ("2009-06-15T13:45:30", "HH", "13"),
    ("2009-06-15T01:09:30", "m", "9"), ("2009-06-15T13:29:30", "m", "29"),
    ("2009-06-15T01:09:30", "mm", "09"), ("2009-06-15T01:45:30", "mm", "45"),
    ("2009-06-15T13:45:30", "M", "6"), ("2009-06-15T13:45:30", "MM", "06"),
    ("2009-06-15T13:45:09", "s", "9"), ("2009-06-15T13:45:09", "ss", "09"),
    # (the table's years 0001 and 0900 are outside what the local engine holds)
    ("1900-01-01T00:00:00", "y", "0"), ("2009-06-15T13:45:30", "y", "9"),
    ("2019-06-15T13:45:30", "y", "19"), ("1900-01-01T00:00:00", "yy", "00"),
    ("2019-06-15T13:45:30", "yy", "19"), ("1900-01-01T00:00:00", "yyyy", "1900"),
    ("2009-06-15T13:45:30", "yyyy", "2009"), ("2009-06-15T13:45:09", "tt", "PM"),
]


def test_format_datetime_elements_as_documented():
    items = ", ".join(f"c{i} = format_datetime(datetime({v}), '{el}')"
                      for i, (v, el, _) in enumerate(DATETIME_ELEMENTS))
    assert one("print " + items) == tuple(out for _, _, out in DATETIME_ELEMENTS)


def test_format_datetime_composite_and_null():
    assert one("let dt = datetime(2017-01-29 09:00:05.5); print "
               "a = format_datetime(dt, 'yyyy-M-d [h:m:s tt] ss.FFF'), "
               "b = format_datetime(datetime(2017-01-29 09:00:05), 'HH:mm:ss.FFF'), "
               "c = format_datetime(datetime(null), 'yyyy')") == (
        "2017-1-29 [9:0:5 AM] 05.5", "09:00:05", "")


def test_format_datetime_element_not_in_the_reference_is_unsupported():
    with pytest.raises(KqlUnsupported) as ei:
        kql("print format_datetime(now(), 'yyyy ddd')")
    assert ei.value.message == ("format_datetime(): format element 'ddd' is not supported "
                                "(see the Kusto reference's list of format elements)")
    assert (ei.value.line, ei.value.column) == (1, 30)


# ------------------------------------------------------------------ format_timespan

#: format_timespan()'s table (value 15.13:45:30...), and its worked example
TIMESPAN_ELEMENTS = [
    ("15.13:45:30", "d", "15"), ("15.13:45:30", "dd", "15"), ("15.13:45:30", "ddd", "015"),
    ("15.13:45:30.6170000", "f", "6"), ("15.13:45:30.05", "f", "0"),
    ("15.13:45:30.6170000", "ff", "61"), ("15.13:45:30.0050000", "ff", "00"),
    ("15.13:45:30.6175425", "fffffff", "6175425"), ("15.13:45:30.0001150", "fffffff", "0001150"),
    ("15.13:45:30.6170000", "F", "6"), ("15.13:45:30.0500000", "F", ""),
    ("15.13:45:30.0001150", "FFFFFFF", "000115"), ("15.13:45:30.0005000", "FFF", ""),
    ("15.01:45:30", "H", "1"), ("15.13:45:30", "H", "13"),
    ("15.01:45:30", "HH", "01"), ("15.13:45:30", "HH", "13"),
    ("15.01:09:30", "m", "9"), ("15.13:29:30", "m", "29"),
    ("15.01:09:30", "mm", "09"), ("15.01:45:30", "mm", "45"),
    ("15.13:45:09", "s", "9"), ("15.13:45:09", "ss", "09"),
    ("29.09:00:05.12345", "dd.hh:mm:ss:FF", "29.09:00:05:12"),
    ("29.09:00:05.12345", "ddd.h:mm:ss [fffffff]", "029.9:00:05 [1234500]"),
]


def test_format_timespan_elements_as_documented():
    items = ", ".join(f"c{i} = format_timespan(time({v}), '{el}')"
                      for i, (v, el, _) in enumerate(TIMESPAN_ELEMENTS))
    assert one("print " + items) == tuple(out for _, _, out in TIMESPAN_ELEMENTS)


def test_format_timespan_of_a_column():
    df = kql("range x from 1 to 3 step 1 | project s = format_timespan(x * 90m, 'd.HH:mm')")
    assert df["s"].to_list() == ["0.01:30", "0.03:00", "0.04:30"]


# ------------------------------------------------------------------ hash


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 15, 31, 32, 33, 63, 64, 100, 1000])
def test_xxh64_agrees_with_zstd_frame_checksums(n):
    data = bytes((i * 37 + n) % 251 for i in range(n))
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    assert xxh64(data) & 0xFFFFFFFF == int.from_bytes(frame[-4:], "little")


def test_hash_values_from_the_reference():
    # hash() and hash_xxhash64() pages: "World", modulo 100, datetime("2015-01-01")
    for f in ("hash", "hash_xxhash64"):
        assert one(f'print {f}("World"), {f}("World", 100), {f}(datetime("2015-01-01"))') \
            == (1846988464401551951, 51, 1380966698541616202)


def test_hash_of_a_column_and_its_nulls():
    df = kql('datatable(s: string, d: datetime)["World", datetime(2015-01-01), '
             '"World", datetime(null)] | project h = hash(s, 100), hd = hash(d)')
    assert df.rows() == [(51, 1380966698541616202), (51, None)]


def test_hash_of_a_type_with_undocumented_bytes_is_unsupported():
    with pytest.raises(KqlUnsupported) as ei:
        kql("print hash(5)")
    assert ei.value.message.startswith("hash() of a long value is not supported locally")
    with pytest.raises(KqlSemanticError, match="modulo must be a positive integer literal"):
        kql('print hash("a", 0)')


# ------------------------------------------------------------------ percentiles


def test_percentiles_one_column_each_named_like_percentile():
    df = kql("range x from 1 to 20 step 1 | extend g = x % 2 "
             "| summarize percentiles(x, 5, 50, 99.5), percentile(x, 50) by g | sort by g asc")
    assert df.columns == ["g", "percentile_x_5", "percentile_x_50", "percentile_x_99_5",
                          "percentile_x_501"]
    # nearest rank: the smallest value with P% of the values at or below it
    assert df.rows() == [(0, 2, 10, 20, 10), (1, 1, 9, 19, 9)]


def test_percentiles_array_one_dynamic_column():
    # column name as the reference's percentiles_array example prints it (percentiles_Value)
    df = kql("range Value from 1 to 10 step 1 "
             "| summarize percentiles_array(Value, 10, 90), percentiles_array(Value, "
             "dynamic([50]))")
    assert df.columns == ["percentiles_Value", "percentiles_Value1"]
    assert df.rows() == [([1, 9], [5])]


def test_percentiles_errors():
    with pytest.raises(KqlSemanticError, match="one column per percentage"):
        kql("range x from 1 to 3 step 1 | summarize p = percentiles(x, 5, 50)")
    with pytest.raises(KqlSemanticError) as ei:
        kql("range x from 1 to 3 step 1 | summarize percentiles_array(x, dynamic([]))")
    assert ei.value.message == "percentiles_array() needs at least one percentage"
    assert (ei.value.line, ei.value.column) == (1, 61)
    with pytest.raises(KqlSemanticError, match=r"percentiles\(\) needs a literal percentage "
                       "between 0 and 100"):
        kql("range x from 1 to 3 step 1 | summarize percentiles(x, 101)")


# ------------------------------------------------------------------ catalogue


def test_catalogue_is_computed_from_the_registries():
    assert {"format_timespan", "hash", "hash_xxhash64", "format_datetime"} <= SCALAR_FUNCTIONS
    assert not SCALAR_FUNCTIONS & UNSUPPORTED_FUNCTIONS
    assert "tdigest" in UNSUPPORTED_FUNCTIONS


# ------------------------------------------------------------------ dynamic arrays, regex


def test_dynamic_array_indexing():
    assert one('print a = dynamic([1, 2, 3])[0], b = dynamic(["x", "y"])[1], '
               'c = dynamic([1, 2])[5], d = toint(dynamic([1, 2, 3])[2]) + 1, '
               'e = dynamic({"a": [5]}).a[0], f = dynamic([1, 2]).a') == (
        "1", "y", None, 4, "5", None)
    df = kql("range x from 1 to 3 step 1 | extend a = pack_array(x, x * 2) "
             "| project b = tolong(a[1]) * 10")
    assert df["b"].to_list() == [20, 40, 60]
    with pytest.raises(KqlUnsupported, match="negative array indexes"):
        kql("print dynamic([1, 2])[-1]")


def test_extract_all_named_groups():
    # the reference's extract_all() example 5 (its header says ID for the column Id)
    assert one('print Id="82b8be2d-dfa7-4bd1-8f63-24ad26d31449" | extend guid_bytes = '
               'extract_all(@"(?P<first>\\w)(?P<middle>\\w+)(?P<last>\\w)", '
               "dynamic(['first',2,'last']), Id)") == (
        "82b8be2d-dfa7-4bd1-8f63-24ad26d31449",
        '[["8","2b8be2","d"],["d","fa","7"],["4","bd","1"],["8","f6","3"],'
        '["2","4ad26d3144","9"]]')
    with pytest.raises(KqlSemanticError) as ei:
        kql('print extract_all(@"(?P<first>\\w)(\\w)", dynamic(["firs", 2]), "ab")')
    assert ei.value.message == ("extract_all(): the regex has no capture group 'firs' "
                                "(it has 2, named first)")
    assert (ei.value.line, ei.value.column) == (1, 41)


def test_new_guid_per_row_and_toscalar_once():
    # the reference's toscalar() example 3: toscalar(new_guid()) is one value for every
    # row, a let of new_guid() is evaluated per row (its printed GUIDs are random)
    df = kql("let g1 = toscalar(new_guid()); let g2 = new_guid(); "
             "range x from 1 to 3 step 1 | extend x=g1, y=g2")
    assert df.columns == ["x", "y"]
    assert df["x"].n_unique() == 1 and df["y"].n_unique() == 3
    for g in [*df["x"], *df["y"]]:
        assert uuid.UUID(g).version == 4


def test_pack_all_and_bag_remove_keys():
    q = ("datatable(S: string, T: string, N: long, D: dynamic, W: datetime)"
         '["a", "x\\"y", 46, dynamic({"k": [1]}), datetime(2020-01-01), '
         '"b", "", int(null), dynamic(null), datetime(null)] '
         "| project p = pack_all(), q = pack_all(true), "
         'r = bag_remove_keys(pack_all(), dynamic(["N", "W"]))')
    assert kql(q).rows() == [
        ('{"S":"a","T":"x\\"y","N":46,"D":{"k":[1]},"W":"2020-01-01T00:00:00.0000000Z"}',
         '{"S":"a","T":"x\\"y","N":46,"D":{"k":[1]},"W":"2020-01-01T00:00:00.0000000Z"}',
         '{"S":"a","T":"x\\"y","D":{"k":[1]}}'),
        ('{"S":"b","T":"","N":null,"D":null,"W":null}', '{"S":"b"}',
         '{"S":"b","T":"","D":null}'),
    ]


def test_an_argument_of_the_wrong_type_is_named_where_it_is():
    with pytest.raises(KqlSemanticError) as ei:
        kql('print format_timespan("x", "d")')
    assert ei.value.message == "expected timespan here, got string"
    assert (ei.value.line, ei.value.column) == (1, 23)
