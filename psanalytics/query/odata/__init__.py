"""Profile Store ``$filter`` dialect -> Polars expression, and the ``F`` filter builder.

>>> import polars as pl
>>> from psanalytics.query.odata import compile_filter, F
>>> expr = compile_filter("EventType eq epiPageView AND User.Email ne ''")
>>> str(F.Payload.epi.language == "sv")
"Payload.epi.language eq 'sv'"

The dialect, as real clients wrote it (see ``shared/spec/apis.md``):

- comparisons ``eq ne gt ge lt le``, logic ``and or not`` (any case), parentheses;
- values unquoted (``EventType eq epiPageView``) or single-quoted (``''`` escapes a quote);
  datetimes bare (``EventTime gt 2020-01-01T00:00:00Z``, up to 7+ fractional digits,
  no offset means UTC); a bare date compared with ``eq`` means that whole day (``gt`` a
  date means after that day, ``le`` a date means up to the end of it); GUIDs bare;
- dotted paths: ``User.Email``, ``User.Name`` (the User struct),
  ``User.Info.Email`` (a key of the user's ``Info`` object, read from its JSON text;
  ``Info.Email`` means the same: real callers wrote it, and ``User.Info`` is the only
  ``Info`` an event has) and ``Payload.epi.language`` (read from the Payload JSON text);
- ``contains``, ``startswith``, ``endswith`` and ``in`` are rejected unless ``lenient``.

The package: ``_parse`` (text -> AST, :class:`ODataError`), ``_compile`` (AST -> Polars),
``_bounds`` (EventTime bounds, the split the emulator slices by), ``_orderby`` (the one
``$orderby`` parser), ``builder`` (``F``).

Parsing uses the ``odata-query`` package's lexer and parser (text -> tokens -> AST); this
module is the visitor that turns the AST into a Polars expression. One change to the
library's lexer (a subclass, not text rewriting): its ``any``, ``all``, ``true``,
``false``, ``null`` and ``not`` tokens matched word prefixes, so unquoted values such as
``anything``, ``allowed``, ``trueview`` or ``nullable`` failed to parse; here those
keywords must be whole words. Unquoted values may also start with a non-ASCII letter
(``City eq Göteborg``).

Semantics chosen where the spec is silent:

- On the right of a comparison, an identifier is a value (``EventType eq Value`` compares
  with the text ``"Value"``). A literal on the left and a property on the right is
  flipped. Property names are matched case-insensitively; Payload keys are not.
- String columns are never null: ``eq null`` on them means ``eq ''``. ``Payload eq null``
  tests for a missing Payload. A comparison on a Payload path that is missing is false
  (and ``not`` of it is true).
- Numbers compared with a Payload path compare numerically; with a string column they
  compare with the number's text. Bare GUIDs compare case-insensitively.
"""

from __future__ import annotations

from psanalytics.query.odata._bounds import split_filter, time_bounds, time_bounds_ns

# _cmp, _Compiler, _Prop: the emulator's Profiles filter extends the compiler.
from psanalytics.query.odata._compile import (  # noqa: F401
    _cmp,
    _Compiler,
    _Prop,
    compile_filter,
    filter_frame,
)
from psanalytics.query.odata._orderby import parse_orderby
from psanalytics.query.odata._parse import ODataError, parse_filter
from psanalytics.query.odata.builder import F, Filter

__all__ = [
    "ODataError",
    "compile_filter",
    "filter_frame",
    "parse_filter",
    "time_bounds",
    "time_bounds_ns",
    "split_filter",
    "parse_orderby",
    "F",
    "Filter",
]
