"""Where replayed batches go: the Event API, a Tracking API, or ODP.

A sink has a ``kind`` (``event-api``, ``tracking``, ``odp``) and ``send(batch)``, which
returns an object with ``status``, ``retries`` and ``elapsed_s``, raises an ``ApiError``
with a 4xx status for a refused body (kept aside by the replayer) and ``ApiError`` when
retries run out. Sinks never change a client they were given: :func:`with_policy`
returns a sink over a copy of the client when the replay asks for another retry policy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from psanalytics.replay._errors import ReplayError
from psanalytics.replay.batching import Batch

__all__ = ["EventApiSink", "OdpSink", "Sink", "TrackingSink", "with_policy"]


class Sink(Protocol):
    """Where batches go. ``send`` returns an object with ``status`` and ``retries``;
    it raises ``EventApiRejected`` (or any ``ApiError`` with status 400) for a rejected
    body and ``ApiError`` when retries are exhausted."""

    kind: str

    def send(self, batch: Batch) -> Any: ...

    def close(self) -> None: ...


class _ClientSink:
    """What the HTTP sinks share: a client they may own (made here, so closed here) or one
    the caller passed (never closed here), its URL, and a repr that shows no key."""

    api: Any
    _owns: bool

    def _adopt(self, api: Any, make: Callable[[], Any]) -> None:
        self._owns = api is None
        self.api = make() if api is None else api

    @property
    def url(self) -> str:
        return str(self.api.url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api!r})"

    def close(self) -> None:
        if self._owns:
            self.api.close()


class EventApiSink(_ClientSink):
    """Posts Event API bodies with :class:`~psanalytics.api.event_api.EventApi`.

    ``url``: the server (``serve().url``) or endpoint; production only when named
    (``EventApi.US`` / ``EventApi.EU``, or ``"us"`` / ``"eu"``). ``strict`` asks the service
    for 400s on invalid fields. ``policy`` is an ``api.http.RetryPolicy``.
    """

    kind = "event-api"

    def __init__(self, url: str | None = None, *, api: Any = None, strict: bool = False,
                 transport: Any = None, policy: Any = None, timeout: Any = None) -> None:
        from psanalytics.api.event_api import EventApi

        if isinstance(url, str) and url.lower() in ("us", "eu"):
            url = EventApi.US if url.lower() == "us" else EventApi.EU
        self._adopt(api, lambda: EventApi(url, strict=strict, transport=transport, policy=policy,
                                          timeout=timeout))

    def send(self, batch: Batch) -> Any:
        return self.api.send(batch.body)


class TrackingSink:
    """Posts TrackBulk arrays (<= 100 events, <= 256 KB) with ``ProfileStore.track_batch``.

    Pass a connected ``store`` (``psanalytics.connect(url, api_key)``), or ``url`` and
    ``api_key`` (and ``transport``) to connect here.
    """

    kind = "tracking"

    def __init__(self, store: Any = None, *, url: str | None = None, api_key: str | None = None,
                 **options: Any) -> None:
        if store is None:
            from psanalytics._connect import connect

            if url is None and options.get("transport") is None:
                raise ReplayError("TrackingSink needs a ProfileStore, or url= and api_key=")
            store = connect(url, api_key, **options)
            self._owns = True
        else:
            self._owns = False
        self.store = store

    def __repr__(self) -> str:
        return f"TrackingSink({getattr(self.store, 'url', self.store)!r})"

    def send(self, batch: Batch) -> Any:
        return self.store.track_batch(orjson.loads(batch.body))

    def close(self) -> None:
        if self._owns and hasattr(self.store, "close"):
            self.store.close()


class OdpSink(_ClientSink):
    """Posts ODP event arrays (``POST /v3/events``) and, for ``odp-profiles`` batches,
    customer updates (``POST /v3/profiles``, at most 10 requests/s) with
    :class:`~psanalytics.api.odp.OdpApi`.

    ``url``: the ODP host or the emulator's ``serve().url``; ``api_key`` (default
    ``PSANALYTICS_ODP_API_KEY``); or ``api=`` an existing ``OdpApi``.
    """

    kind = "odp"

    def __init__(self, url: str | None = None, *, api: Any = None, api_key: Any = None,
                 transport: Any = None, policy: Any = None, timeout: Any = None) -> None:
        from psanalytics.api.odp import OdpApi

        self._adopt(api, lambda: OdpApi(url, api_key=api_key, transport=transport, policy=policy,
                                        timeout=timeout))

    def send(self, batch: Batch) -> Any:
        if batch.kind == "odp-profiles":
            return self.api.send_profiles(batch.body)
        return self.api.send_events(batch.body)


def with_policy(sink: Any, policy: Any) -> Any:
    """``sink`` sending with retry ``policy``, without changing the caller's objects: a
    shallow copy of the sink over a shallow copy of its client (the connection pool is
    shared, the policy is not). The copy never closes the caller's client."""
    if policy is None:
        return sink
    for attr in ("api", "store"):
        client = getattr(sink, attr, None)
        if client is not None and hasattr(client, "policy"):
            c2 = copy.copy(client)
            c2.policy = policy
            s2 = copy.copy(sink)
            setattr(s2, attr, c2)
            if hasattr(s2, "_owns"):
                s2._owns = False
            return s2
    return sink
