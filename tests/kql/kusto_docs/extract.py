"""Extract the worked examples of the Kusto reference into test data.

Usage (the docs repository is public: MicrosoftDocs/dataexplorer-docs)::

    python tests/kql/kusto_docs/extract.py /path/to/dataexplorer-docs.git [commit]

For each page in ``PAGES`` (the operators and functions issue 14 lists, and the ones the
local engine already ran), every ```kusto code block that is followed by an output table
(before the next code block or heading) becomes a case: the query as written, the
table's header and rows as the page prints them (cells are text), the page path and the
heading above the example. Code blocks of ``expr // result`` lines (as on the round() and
substring() pages) become one ``print`` case per line. Nothing is edited by hand: judgments
(skips, doc errors) live in ``test_kusto_docs.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

FOLDER = "data-explorer/kusto/query/"
PAGES = """
print-operator datatable-operator range-operator let-statement as-operator
toscalar-function materialize-function join-operator join-innerunique join-inner
join-leftouter join-rightouter join-fullouter join-leftanti join-rightanti join-leftsemi
join-rightsemi lookup-operator union-operator mv-expand-operator mv-apply-operator
parse-operator parse-where-operator make-series-operator serialize-operator
row-number-function prev-function next-function row-cumsum-function top-nested-operator
sample-operator sample-distinct-operator project-reorder-operator project-keep-operator
getschema-operator where-operator project-operator project-away-operator
project-rename-operator extend-operator summarize-operator count-operator
distinct-operator take-operator top-operator sort-operator between-operator
format-datetime-function format-timespan-function make-datetime-function
make-timespan-function startofday-function startofweek-function startofmonth-function
startofyear-function endofday-function endofweek-function endofmonth-function
endofyear-function bin-function bin-at-function datetime-add-function
datetime-part-function datetime-diff-function percentiles-aggregation-function
dcount-aggregation-function pack-function pack-array-function array-length-function
array-concat-function array-slice-function set-union-function set-intersect-function
bag-keys-function url-decode-function url-encode-function parse-url-function
parse-url-query-function extract-all-function extract-function countof-function
indexof-function replace-regex-function has-any-operator has-all-operator hash-function
hash-sha256-function hash-md5-function hash-sha1-function hash-xxhash64-function
iff-function todecimal-function parse-json-function substring-function split-function
round-function count-aggregation-function countif-aggregation-function
make-set-aggregation-function make-list-aggregation-function arg-max-aggregation-function
arg-min-aggregation-function numerical-operators logical-operators tostring-function
strcat-function strlen-function trim-function replace-string-function coalesce-function
case-function isempty-function isnotempty-function isnull-function isnotnull-function
todatetime-function totimespan-function tolong-function toint-function toreal-function
tobool-function abs-function pow-function not-function min-of-function max-of-function
dayofweek-function day-of-week-function day-of-month-function day-of-year-function
getyear-function hour-of-day-function monthofyear-function week-of-year-function
unixtime-seconds-todatetime-function unixtime-milliseconds-todatetime-function
reverse-function strcat-delim-function take-any-aggregation-function
sum-aggregation-function avg-aggregation-function min-aggregation-function
max-aggregation-function dcountif-aggregation-function count-distinct-aggregation-function
""".split()

_FENCE = re.compile(r"^```(\w*)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    # a '|' inside backticks is part of the cell
    out, cur, tick = [], "", False
    for ch in s:
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def _is_sep(line: str) -> bool:
    return bool(re.fullmatch(r"\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*", line)) or bool(
        re.fullmatch(r"\s*\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*\|?\s*", line))


def extract_page(path: str, text: str) -> list[dict]:
    lines = text.splitlines()
    cases: list[dict] = []
    heading = ""
    i = 0
    n = 0
    while i < len(lines):
        hm = _HEADING.match(lines[i])
        if hm:
            heading = hm.group(1).strip()
        fm = _FENCE.match(lines[i].strip())
        if fm and fm.group(1).lower() in ("kusto", "kql"):
            j = i + 1
            body = []
            while j < len(lines) and not lines[j].strip().startswith("```"):
                body.append(lines[j])
                j += 1
            query = "\n".join(body).strip("\n")
            # look for a table before the next fence or heading
            k = j + 1
            table: list[str] = []
            note = ""
            while k < len(lines):
                s = lines[k].strip()
                if s.startswith("```") or _HEADING.match(lines[k]):
                    break
                if s.startswith("|") and k + 1 < len(lines) and _is_sep(lines[k + 1]):
                    table = [lines[k]]
                    m = k + 2
                    while m < len(lines) and lines[m].strip().startswith("|"):
                        table.append(lines[m])
                        m += 1
                    k = m
                    break
                if s and not s.startswith(">") and not s.startswith(":::") and \
                        not s.startswith("**Output") and not s.startswith("**Result"):
                    note += s + " "
                k += 1
            n += 1
            base = {"page": FOLDER + path, "heading": heading, "block": n}
            comment_lines = [ln for ln in body if "//" in ln and ln.strip()
                             and not ln.strip().startswith("//")]
            if table:
                header = _cells(table[0])
                rows = [_cells(r) for r in table[1:]]
                cases.append({**base, "query": query, "columns": header, "rows": rows,
                              "text_between": note.strip()[:300]})
            elif comment_lines and len(comment_lines) == len([b for b in body if b.strip()]):
                # `expr   // result` lines
                for ln in comment_lines:
                    expr, _, res = ln.partition("//")
                    res = res.split("//")[0].strip()
                    cases.append({**base, "query": "print " + expr.strip(),
                                  "columns": None, "rows": [[res]], "from_comment": True})
            i = j + 1
            continue
        i += 1
    for idx, c in enumerate(cases):
        c["id"] = f"{path}#{idx + 1}"
    return cases


def main() -> None:
    git_dir = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) > 2 else "HEAD"
    sha = subprocess.check_output(["git", "--git-dir", git_dir, "rev-parse", commit],
                                  text=True).strip()
    out_dir = Path(__file__).parent
    total = 0
    for page in PAGES:
        try:
            text = subprocess.check_output(
                ["git", "--git-dir", git_dir, "show", f"{sha}:{FOLDER}{page}.md"], text=True,
                stderr=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            print(f"missing page {page}", file=sys.stderr)
            continue
        cases = extract_page(page, text)
        if not cases:
            continue
        for c in cases:
            c["commit"] = sha
        (out_dir / f"{page}.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False)
                                              + "\n")
        total += len(cases)
    print(f"{total} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
