"""Emulator of the Profile Store, Tracking and Event APIs, in-process or on a real port.

>>> from psanalytics.emulator import Emulator, serve
>>> emu = Emulator()                                   # doctest: +SKIP
>>> with serve() as srv:                               # doctest: +SKIP
...     print(srv.url, srv.api_key)
"""

from psanalytics.emulator.app import (
    EMULATOR_VERSION,
    IN_PROCESS_URL,
    VERSION_HEADER,
    Emulator,
    country_for_ip,
)
from psanalytics.emulator.faults import Faults, FaultsError
from psanalytics.emulator.server import Server, serve

__all__ = [
    "Emulator",
    "Faults",
    "FaultsError",
    "Server",
    "serve",
    "country_for_ip",
    "EMULATOR_VERSION",
    "VERSION_HEADER",
    "IN_PROCESS_URL",
]
