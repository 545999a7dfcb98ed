"""The real-browser test: JupyterLab in headless Chromium with the network blocked.

Run with ``make test-browser`` (not collected by ``make test``: this folder is outside
``tests/``). Needs Debian's ``chromium`` (``apt-get install -y chromium``) or a Chromium
named by ``CHROMIUM=/path``; playwright-python drives it (no browser download).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str | None:
    """``$CHROMIUM``, else ``chromium`` on PATH, else Debian's ``/usr/bin/chromium``."""
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, *, timeout: float, what: str, every: float = 0.25):  # noqa: ANN001, ANN201
    """Poll ``check()`` until it returns something truthy; fail saying ``what`` after
    ``timeout`` seconds (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.exit(
            "make test-browser needs Chromium: install Debian's package with "
            "'apt-get install -y chromium' (as root), or set CHROMIUM=/path/to/chromium",
            returncode=2,
        )
    return path


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    """A JupyterLab server on 127.0.0.1 serving a copy of the committed notebooks."""
    from psanalytics.jupyter.demo import committed_notebooks

    work = Path(tempfile.mkdtemp(prefix="psa-browser-"))
    root = work / "notebooks"
    root.mkdir()
    names = []
    for nb in committed_notebooks(ROOT / "notebooks"):
        shutil.copy(nb, root / nb.name)
        names.append(nb.name)
    settings = work / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (no windowing), so every output is in the page to be checked
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (work / "settings" / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (work / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSANALYTICS_")}
    env["JUPYTER_CONFIG_DIR"] = str(work / "config")
    env["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={work / 'settings'}",
        f"--LabApp.workspaces_dir={work / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--ServerApp.open_browser=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(work / "lab.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited: {(work / 'lab.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(up, timeout=120, what="jupyter lab to start")
        yield {"base": base, "token": token, "names": names, "log": work / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def browser(chromium: str):  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, lab):  # noqa: ANN001, ANN201
    """A page whose every request off this machine is aborted (and recorded)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []

    def route(r):  # noqa: ANN001, ANN202
        url = urlparse(r.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOCAL_HOSTS:
            blocked.append(r.request.url)
            return r.abort("internetdisconnected")
        return r.continue_()

    context.route("**/*", route)
    pg = context.new_page()
    pg.blocked = blocked
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
