import polars as pl
import pytest

from psanalytics import samples


@pytest.fixture(scope="session")
def small() -> pl.DataFrame:
    """2,000 generated events (plenty of every event type, ties, several users)."""
    return samples.generate(2_000, seed=7)


@pytest.fixture(scope="session")
def medium() -> pl.DataFrame:
    """60,000 generated events with a burst (for distribution properties)."""
    return samples.generate(60_000, seed=11, burst=True)
