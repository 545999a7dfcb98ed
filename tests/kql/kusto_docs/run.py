"""Run every documented example and print a summary (a development aid; the test is
tests/kql/test_kusto_docs.py): python tests/kql/kusto_docs/run.py [-v] [filter]"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_kusto_docs import CASES, outcome  # noqa: E402

verbose = "-v" in sys.argv
update = "--update" in sys.argv
flt = [a for a in sys.argv[1:] if not a.startswith("-")]
passing = []
gaps: dict[str, str] = {}
counts: Counter[str] = Counter()
for case in CASES:
    if flt and not any(f in case["id"] for f in flt):
        continue
    status, detail = outcome(case)
    counts[status] += 1
    if status == "pass":
        passing.append(case["id"])
    elif status in ("wrong", "error"):
        gaps[case["id"]] = f"{status}: {detail.splitlines()[0][:200]}"
    if verbose and status not in ("pass", "skip"):
        print(f"--- {status} {case['id']}: {detail[:600]}\n{case['query']}\n")
print(dict(counts))
if update and not flt:
    (Path(__file__).parent / "passing.txt").write_text("\n".join(sorted(passing)) + "\n")
    import json
    (Path(__file__).parent / "known_gaps.json").write_text(
        json.dumps(dict(sorted(gaps.items())), indent=1) + "\n")
