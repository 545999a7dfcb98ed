"""The names KQL gives output columns: ``Payload.epi.language`` -> ``Payload_epi_language``,
``tostring(x)`` -> ``x``, ``count()`` -> ``count_``, ``percentile(x, 50)`` ->
``percentile_x_50``... (the Kusto rules; pure functions of the AST)."""

from __future__ import annotations

from psanalytics.query.kql import nodes as N

#: Conversions whose single argument names the column (``project tostring(Name)`` -> Name).
CONVERSIONS = frozenset({
    "tostring", "toint", "tolong", "toreal", "todouble", "todecimal", "tobool", "toboolean",
    "todatetime", "totimespan", "todynamic", "parse_json", "toguid",
})


def path_name(e: N.Expr) -> str | None:
    """``Payload.epi.language`` -> ``Payload_epi_language``; a column -> its name."""
    if isinstance(e, N.Name):
        return e.name
    if isinstance(e, N.Member):
        base = path_name(e.obj)
        return None if base is None else f"{base}_{e.key}"
    if isinstance(e, N.Index) and isinstance(e.index, N.Literal):
        base = path_name(e.obj)
        return None if base is None else f"{base}_{e.index.value}"
    return None


def column_name(e: N.Expr) -> str | None:
    """Name an unnamed ``project``/``extend`` item takes (None -> ``ColumnN``)."""
    p = path_name(e)
    if p is not None:
        return p
    if isinstance(e, N.Call) and e.name in CONVERSIONS and len(e.args) == 1:
        return column_name(e.args[0])
    return None


def arg_name(e: N.Expr) -> str:
    """The column name an aggregate's argument contributes (``""`` when compound)."""
    p = path_name(e)
    if p is not None:
        return p
    if isinstance(e, N.Call):
        names = [n for n in (_single_ref(a) for a in e.args) if n]
        refs = {n for n in names}
        if len(refs) == 1:
            return names[0]
    return ""


def _single_ref(e: N.Expr) -> str | None:
    p = path_name(e)
    if p is not None:
        return p
    if isinstance(e, N.Call):
        names = {n for n in (_single_ref(a) for a in e.args) if n}
        if len(names) == 1:
            return names.pop()
    return None


def aggregate_name(call: N.Call) -> str | None:
    """Auto name of an aggregate call per the Kusto rules (None for arg_max/arg_min)."""
    f = call.name
    a = call.args
    first = arg_name(a[0]) if a and not isinstance(a[0], N.Star) else ""
    if f == "count":
        return "count_" + first
    if f in ("countif",):
        return "countif_"
    if f == "make_set" or f == "make_set_if":
        return "set_" + first
    if f == "make_list" or f == "make_list_if":
        return "list_" + first
    if f == "percentile":
        pct = ""
        if len(a) > 1 and isinstance(a[1], N.Literal):
            v = a[1].value
            pct = str(v).replace(".", "_") if v is not None else ""
        return f"percentile_{first}_{pct}"
    if f == "percentiles_array":
        return "percentiles_" + first
    if f == "any":
        return "any_" + first
    if f == "take_any":
        return first or "take_any_"
    return f"{f}_{first}"



def percentile_name(arg: N.Expr, pct: float) -> str:
    """``percentiles(x, 5, 99.5)``'s columns: ``percentile_x_5``, ``percentile_x_99_5``."""
    p = str(int(pct)) if pct.is_integer() else str(pct).replace(".", "_")
    return f"percentile_{arg_name(arg)}_{p}"
