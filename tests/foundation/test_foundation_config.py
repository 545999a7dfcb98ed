"""ps.Config: one switch for progress bars (like pl.Config), scoped with `with`."""

from __future__ import annotations

import pytest

import psanalytics as ps
from psanalytics import samples
from psanalytics._config import progress_enabled
from psanalytics._connect import connect
from psanalytics.emulator import Emulator


@pytest.fixture(autouse=True)
def _clean_config():
    ps.Config.restore_defaults()
    yield
    ps.Config.restore_defaults()


@pytest.fixture(scope="module")
def emu() -> Emulator:
    return Emulator(samples.generate(300, seed=2))


def _store(emu: Emulator, **kw):
    return connect(emu.url, emu.api_key, transport=emu.transport(), emulator=emu, **kw)


def _bar_drawn(capfd) -> bool:
    return "track: 100%" in capfd.readouterr().err  # tqdm's "track: 100%|...| 3/3 [..]"


def test_resolution_order():
    assert progress_enabled(None, default=True) is True
    assert progress_enabled(None, default=False) is False
    ps.Config.set_progress(False)
    assert progress_enabled(None, default=True) is False
    assert progress_enabled(True, default=False) is True  # the call's own value wins
    with ps.Config(progress=True):
        assert progress_enabled(None, default=False) is True
        with ps.Config(restore_defaults=True):
            assert ps.Config.state() == {"progress": None}
        assert ps.Config.state() == {"progress": True}
    assert ps.Config.state() == {"progress": False}  # restored on leaving
    assert ps.Config.set_progress(None) is ps.Config  # chains, like pl.Config
    with pytest.raises(TypeError, match="Config has no option"):
        ps.Config(colour=True)
    with pytest.raises(TypeError, match="set_progress takes True, False or None, not 'no'"):
        ps.Config.set_progress("no")  # type: ignore[arg-type]


def test_decorator_scopes_the_setting():
    @ps.Config(progress=False)
    def quiet() -> bool:
        return progress_enabled(None, default=True)

    assert quiet() is False and ps.Config.state() == {"progress": None}


def test_bars_follow_config_unless_told(emu, capfd):
    store = _store(emu)
    rows = samples.generate(3, seed=9)
    capfd.readouterr()
    with ps.Config(progress=False):
        assert store.progress is False
        assert store.track(rows).events == 3
        assert not _bar_drawn(capfd)
        store.track(rows, progress=True)  # the call wins
        assert _bar_drawn(capfd)
    with ps.Config(progress=True):
        assert _store(emu, progress=False).progress is False  # the connection wins
        _store(emu, progress=False).track(rows)
        assert not _bar_drawn(capfd)
        assert store.progress is True
        store.track(rows)
        assert _bar_drawn(capfd)
