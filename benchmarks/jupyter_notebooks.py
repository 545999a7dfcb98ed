"""How long the four notebooks take to execute (the CI budget is 90 s for all four), and
what importing Altair costs with and without jsonschema's optional ``rfc3987_syntax``
(the reference: a plain ``import altair``), measured in the same run.

    .venv/bin/python benchmarks/jupyter_notebooks.py [--rounds 3]

Each import is timed in a fresh interpreter (best of ``rounds``); each notebook is
executed with nbclient in a fresh kernel, as nbmake does, with PSANALYTICS_* removed from
the kernel's environment (embedded emulator).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN = "import altair"
OURS = "import psanalytics.jupyter.charts"


def _import_time(code: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def _run_notebook(path: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSANALYTICS_")}
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    started = time.perf_counter()
    client.execute(env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
    baseline = _import_time("pass", args.rounds)
    plain = _import_time(PLAIN, args.rounds) - baseline
    ours = _import_time(OURS, args.rounds) - baseline
    print(f"import altair (reference)             {plain:6.2f} s")
    print(f"import psanalytics.jupyter.charts     {ours:6.2f} s   ({plain / ours:.1f}x faster)")
    total = 0.0
    from psanalytics.jupyter.demo import committed_notebooks

    paths = committed_notebooks(ROOT / "notebooks")
    for path in paths:
        seconds = _run_notebook(path)
        total += seconds
        print(f"{path.name:34s} {seconds:6.2f} s")
    print(f"{f'all {len(paths)} notebooks':34s} {total:6.2f} s   (budget 90 s)")


if __name__ == "__main__":
    main()
