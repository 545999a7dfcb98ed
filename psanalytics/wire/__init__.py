"""The wire formats, once each (bottom layer: imports only ``schema``, ``_time``, ``errors``).

- :mod:`psanalytics.wire.api_json`: TrackEvents API JSON in (a page body or items -> the
  canonical frame, fast) and out.
- :mod:`psanalytics.wire.tracking`: Tracking API bodies (camelCase) from a canonical frame.
- :mod:`psanalytics.wire.limits`: the API's limits as the client respects them (result
  window, preview cap, bulk sizes, the Event API's 3.5 MB).

The emulator keeps its own copy of the limits (``psanalytics.emulator``) on purpose: it
is an independent oracle of the spec, so a wrong client-side constant is caught by the
tests instead of being shared by both sides.
"""
