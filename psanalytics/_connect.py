"""``connect()``: a real Profile Store, or the in-process emulator when nothing is configured.

It lives above both ``api`` and ``emulator`` (the only module that may pick between them),
so the api room never imports the emulator.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from psanalytics.api.profile_store import ProfileStore
from psanalytics.errors import ArgumentError

__all__ = ["connect"]


def connect(url: str | None = None, api_key: str | None = None, *, scope: str = "default",
            **options: Any) -> ProfileStore:
    """Connect to Profile Store.

    ``url`` and ``api_key`` default to the ``PSANALYTICS_URL`` and ``PSANALYTICS_API_KEY``
    environment variables. With neither set, an in-process emulator seeded with the sample
    data is started (no sockets, no credentials) and one line on stderr says so; pass
    ``quiet=True`` to silence it. ``options`` go to :class:`ProfileStore` (``transport``,
    ``policy``, ``concurrency``, ``page_size``, ``progress``, ``timeout``, ``auth``,
    ``tracking_url``, ``tracking_key``: the Tracking API's own host and key).
    """
    quiet = bool(options.pop("quiet", False))
    url = url or os.environ.get("PSANALYTICS_URL") or None
    api_key = api_key or os.environ.get("PSANALYTICS_API_KEY") or None
    if url is None and api_key is None and options.get("transport") is None:
        from psanalytics.emulator import Emulator

        emu = Emulator()
        if not quiet:
            n = emu.events().height
            print(
                f"psanalytics: no url or API key configured (PSANALYTICS_URL / PSANALYTICS_API_KEY): "
                f"using the in-process emulator with {n:,} sample events",
                file=sys.stderr,
            )
        return ProfileStore(emu.url, emu.api_key, scope=scope, transport=emu.transport(),
                            emulator=emu, **options)
    if url is None:
        if options.get("transport") is not None:
            url = "http://psanalytics-emulator"
        else:
            raise ArgumentError("an API key was given but no url: pass url= or set PSANALYTICS_URL")
    return ProfileStore(url, api_key, scope=scope, **options)
