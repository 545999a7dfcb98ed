"""``$orderby`` text -> [(column, descending)], the one parser (client and emulator)."""

from __future__ import annotations

import re

from psanalytics.query.odata._parse import _COLS_LOWER, ODataError

# --------------------------------------------------------------------------- $orderby


_ORDER_TERM = re.compile(r"^\s*([A-Za-z_][\w.]*)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def parse_orderby(text: str | None, *, server: bool = True) -> list[tuple[str, bool]]:
    """``"EventTime desc, TrackId"`` -> ``[("EventTime", True), ("TrackId", False)]``.

    The one ``$orderby`` reader (the emulator, and the client's own ordering and
    ``$orderby`` for ``events(orderby=...)``). Each term is ``Prop [asc|desc]`` (direction
    in any case, ascending by default); the bool is "descending". Column names come back
    in their canonical spelling (``eventtype`` -> ``EventType``, ``user.email`` ->
    ``User.Email``). With ``server`` (the default) only what the API orders by is allowed:
    a column or ``User.Email``/``User.Name``; with ``server=False`` any column or dotted
    path is returned (the client sorts a frame by it, e.g. ``Payload``). Raises
    :class:`ODataError` with the position of a bad term.

    >>> parse_orderby("eventtime DESC, User.email")
    [('EventTime', True), ('User.Email', False)]
    >>> parse_orderby("Payload desc", server=False)
    [('Payload', True)]
    """
    out: list[tuple[str, bool]] = []
    if text is None or not text.strip():
        return out
    offset = 0
    for term in text.split(","):
        m = _ORDER_TERM.match(term)
        pos = offset + len(term) - len(term.lstrip()) + 1
        if not m:
            raise ODataError(f"expected 'Property [asc|desc]', got {term.strip()!r}",
                             text=text, position=pos, what="$orderby")
        name, direction = m.group(1), (m.group(2) or "asc").lower()
        parts = name.split(".")
        root = _COLS_LOWER.get(parts[0].lower())
        if root == "User" and len(parts) == 2 and parts[1].lower() in ("email", "name"):
            canon: str | None = f"User.{parts[1].capitalize()}"
        elif root is not None and root not in ("User", "Payload") and len(parts) == 1:
            canon = root
        else:
            canon = None  # not a key the API orders by
        if canon is None and server:
            raise ODataError(f"cannot order by {name!r} (use a column such as EventTime, or "
                             "User.Email / User.Name)", text=text, position=pos, what="$orderby")
        if canon is None:
            canon = ".".join([root or parts[0], *parts[1:]])
        out.append((canon, direction == "desc"))
        offset += len(term) + 1
    return out
