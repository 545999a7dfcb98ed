import pytest
from sessions_streams import frame


@pytest.fixture
def mk():
    return frame
