"""The Kusto reference's worked examples, run as written and compared with the output
tables the docs print (issue 14).

The cases are extracted from MicrosoftDocs/dataexplorer-docs by
``tests/kql/kusto_docs/extract.py`` (one JSON file per page: query, documented columns and
rows, page path, commit). Every case either passes, or is listed here with the reason:

* ``SKIP``: uses something out of scope (the help cluster's sample tables, ``evaluate``
  plugins, external data...). Cases that read a table no example defines are skipped
  automatically, naming the table.
* ``DOC_ISSUES``: the documented output is wrong or ambiguous (the reason says why).
* anything else either passes or raises ``KqlUnsupported`` (valid KQL the local engine
  does not run: never a wrong answer, never an internal error). ``kusto_docs/passing.txt``
  lists the cases that pass (written by ``kusto_docs/run.py --update``): those must keep
  passing. ``run.py`` prints the count and each unsupported case with its message.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from psanalytics.query.kql import KqlError, KqlUnsupported, execute

sys.path.insert(0, str(Path(__file__).parent))
from kusto_docs.compare import compare  # noqa: E402

DATA = Path(__file__).parent / "kusto_docs"
CASES = [c for f in sorted(DATA.glob("*.json")) if f.name != "known_gaps.json"
         for c in json.loads(f.read_text())]
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

#: tables of the docs' "help" cluster sample database (not part of any example)
SAMPLE_TABLES = ("StormEvents", "Traces", "PopulationData", "ConferenceSessions",
                 "TableName", "SalesFact", "Customers", "nyc_taxi", "ContosoSales",
                 "SecurityEvent", "Covid19", "Sales", "Products")

SKIP: dict[str, str] = {}
DOC_ISSUES: dict[str, str] = {
    "bin-function#2": "prints 14 days as '14:00:00:00', which is no Kusto timespan format "
                      "(Kusto writes 14.00:00:00)",
    "extract-all-function#1": "the query reads 'print print extract_all(...)' (a typo)",
    "extract-all-function#2": "the output header says 'ID' but the query names the column 'Id'",
    "extract-all-function#3": "the output header says 'ID' but the query names the column 'Id'",
    "extract-all-function#4": "the output header says 'ID' but the query names the column 'Id'",
    "extract-all-function#5": "the output header says 'ID' but the query names the column 'Id'",
    "trim-function#3": "the table prints the input '    Hello, world!    ' without its spaces "
                       "(a markdown cell cannot show them); trimmed_string matches",
    "strcat-function#2": "the output cell is a rendering of a multi-line string "
                         "('1. \"MultiLineString\": Line 1...'), not the value",
    "todatetime-function#1": "'12-02-2022' is in none of the datetime formats the reference "
                             "lists (ISO 8601, RFC 822, RFC 850, sortable); the example shows "
                             "only that both sides parse it alike, not which date it is",
    "mv-expand-operator#6": "the header says 'DateType' (typo for DataType) and typeof(int) "
                            "prints int: the local engine has one integer type (long)",
    "parse-where-operator#1": "the query writes 'previouLockTime' but the output says "
                              "'previousLockTime'",
    "mv-apply-operator#4": "the header says 'Val1' for the datatable's column 'Val', and the "
                           "row prints [\"A2',\"A1\"] (mismatched quotes)",
    "parse-where-operator#3": "prints one empty row for a query that the page says returns "
                              "no result (the case-sensitive regex matches nothing)",
    "split-function#1": "the header says 'print4' for the fifth column (print_4)",
    "strlen-function#3": "the header says 'length' for an unnamed print column (print_0)",
    "max-of-function#2": "the header says 'result' for an unnamed project column (Column1)",
    "min-of-function#2": "the header says 'result' for an unnamed project column (Column1)",
    "let-statement#5": "the header says 'result' but '| count' names its column 'Count'",
    "join-rightanti#1": "a rightanti join returns the right side's columns (Key, Value2); "
                        "the output shows Value1",
    "join-innerunique#3": "the page says innerunique may keep either duplicate left row: "
                          "this output is one of two correct ones",
    "join-innerunique#4": "the page says innerunique may keep either duplicate left row: "
                          "this output is one of two correct ones",
    "sample-operator#1": "sample is random: the printed count is one possible outcome",
    "sample-operator#2": "sample is random: the printed count is one possible outcome",
    "toscalar-function#3": "new_guid() is random: the printed GUIDs are one possible "
                           "outcome (test_kql_functions checks x is one value, y one per row)",
    "range-operator#2": "prints the rows from 2024-01-04 only (the first three are left "
                        "out without a '...')",
    "replace-regex-function#1": "prints tostring() of a long as '1.000000' (the range "
                                "produces longs; tostring(1) is '1')",
    "replace-string-function#2": "prints tostring() of a long as '1.000000' (the range "
                                 "produces longs; tostring(1) is '1')",
    "parse-url-function#1": "prints the nested 'Query Parameters' bag as a quoted string "
                            "inside the JSON (not valid JSON)",
    "parse-url-query-function#1": "prints the nested 'Query Parameters' bag as a quoted "
                                  "string inside the JSON (not valid JSON)",
    "parse-url-query-function#2": "writes params[\"Query Parameters\"].[param] ('.[' is "
                                  "not KQL syntax)",
    "url-encode-function#1": "the input ends with '/' but the printed output has no "
                              "'%2f' at the end",
    "day-of-month-function#1": "a bare scalar expression, not a query (no print)",
    "day-of-year-function#1": "a bare scalar expression, not a query (no print)",
}
PASSING = set((DATA / "passing.txt").read_text().split()) if (DATA / "passing.txt").exists() \
    else set()
#: cases the engine still answers wrongly or rejects with an error (work left, with the
#: engine's message): strict xfail, so one that starts passing must move to passing.txt
KNOWN_GAPS: dict[str, str] = json.loads((DATA / "known_gaps.json").read_text()) \
    if (DATA / "known_gaps.json").exists() else {}


def _auto_skip(case: dict) -> str | None:
    q = case["query"]
    for t in SAMPLE_TABLES:
        if re.search(rf"\b{t}\b", q) and not re.search(rf"let\s+{t}\s*=", q):
            return f"reads the help cluster's sample table {t}"
    if re.search(r"\|\s*evaluate\b", q):
        return "evaluate plugins are out of scope"
    if not case["rows"] and case["columns"] is not None and not case["columns"]:
        return "the page prints no output table"
    if any(cell.strip() in ("...", "…") for row in case["rows"] for cell in row):
        return "the page prints an elided table ('...'), not the whole result"
    return None


def _ordered(q: str) -> bool:
    return bool(re.search(r"\b(sort|order)\s+by\b|\|\s*top\b(?!-)|\bserialize\b|\brow_number\b"
                          r"|\bprev\(|\bnext\(|\brow_cumsum\b", q))


def outcome(case: dict) -> tuple[str, str]:
    cid = case["id"]
    reason = SKIP.get(cid) or _auto_skip(case)
    if reason:
        return "skip", reason
    if cid in DOC_ISSUES:
        return "skip", "doc issue: " + DOC_ISSUES[cid]
    try:
        res = execute(case["query"], {}, now=NOW)
    except KqlUnsupported as exc:
        return "unsupported", str(exc)
    except KqlError as exc:
        m = re.match(r"unknown table '(\w+)'", exc.message)
        if m:  # the docs' sample database (TransformedSensorsData, ...)
            return "skip", f"reads the table {m.group(1)}, which no example defines"
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported as a crash
        return "crash", f"{type(exc).__name__}: {exc}"
    columns = None if case.get("from_comment") else case["columns"]
    diff = compare(res.frame, columns, case["rows"], ordered=_ordered(case["query"]))
    if diff is None:
        return "pass", ""
    return "wrong", diff


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_documented_example(case: dict) -> None:
    status, detail = outcome(case)
    if status == "skip":
        pytest.skip(detail)
    if case["id"] in KNOWN_GAPS:
        assert status in ("wrong", "error"), f"known gap is now {status}: {detail}"
        pytest.xfail(KNOWN_GAPS[case["id"]])
    if case["id"] in PASSING:
        assert status == "pass", f"{status}: {detail}\n{case['query']}"
    else:
        assert status in ("pass", "unsupported"), f"{status}: {detail}\n{case['query']}"


def test_lists_name_real_cases() -> None:
    ids = {c["id"] for c in CASES}
    for d in (SKIP, DOC_ISSUES, PASSING, KNOWN_GAPS):
        assert set(d) <= ids, set(d) - ids
