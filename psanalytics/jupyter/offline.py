"""Charts that draw with no network: an Altair renderer that ships Vega inline.

Altair's default renderer writes HTML that loads vega, vega-lite and vega-embed from a
CDN, so with no internet (or behind a corporate proxy) every chart shows "Error loading
script"; JupyterLab 4 only draws Vega-Lite v5 natively, and Altair 6 writes v6. This
module registers the Altair renderer ``"psanalytics"``: each chart's output is HTML with
the JavaScript of vega/vega-lite/vega-embed **inline** (the bundle that ``vl-convert``
ships, built for the Vega-Lite version of the installed Altair), so it draws in JupyterLab,
VS Code, the classic notebook and in exported HTML alike, with no request to anywhere.

The bundle is about 0.9 MB. To keep notebooks small it travels once per kernel session:
the first chart shown (and again whenever the cell that carried it is re-executed, since
that clears its old output) carries it, later charts carry only a small script that waits
for it. Widgets (:mod:`psanalytics.jupyter.widgets`) carry one copy each in a hidden
output, so their charts redraw without re-sending it. A chart that finds no bundle after
a while says so in place of the chart (with what to do) instead of staying blank.

``%load_ext psanalytics`` and ``import psanalytics.jupyter`` enable it when Altair's
renderer is still its default; ``enable(force=True)`` overrides another choice and
``alt.renderers.enable("default")`` goes back to Altair's own.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from functools import lru_cache
from typing import Any

__all__ = [
    "RENDERER",
    "bundle_html",
    "chart_html",
    "enable",
    "javascript_bundle",
    "mimebundle",
    "renderer",
]

#: Name of the Altair renderer registered here.
RENDERER = "psanalytics"

# The bundle publishes its libraries under a name of its own (no clash with a vega-embed
# another renderer loaded) and tells waiting charts it is there.
_SNIPPET = (
    "window.psaVega = {embed: vegaEmbed, vega: vega, vegaLite: vegaLite};\n"
    "window.dispatchEvent(new Event('psa-vega-ready'));"
)

_EMBED_OPTIONS = {
    "mode": "vega-lite",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

# How long a chart waits for the bundle (another output may still be loading it).
_WAIT_MS = 20_000

_state: dict[str, Any] = {"sent": False, "cell": None, "current_cell": None}


def _vl_version() -> str:
    from altair.utils._importers import vl_version_for_vl_convert

    return vl_version_for_vl_convert()


@lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """vega + vega-lite + vega-embed as one script (from ``vl-convert``), wrapped so that
    running it twice in a page is harmless; it defines ``window.psaVega``."""
    import vl_convert as vlc

    code = vlc.javascript_bundle(snippet=_SNIPPET, vl_version=_vl_version())
    # The bundle declares top-level consts: a function scope keeps a second copy from
    # clashing with the first ("Identifier has already been declared").
    return "if (!window.psaVega) { (function () {\n" + code + "\n})(); }"


_END_SCRIPT = re.compile(r"</(script)", re.I)


def _script_text(code: str) -> str:
    """JavaScript code safe inside a ``<script>`` element: only a literal ``</script`` could
    end it early (the bundle has none; this keeps it so without touching its regexes)."""
    return _END_SCRIPT.sub(r"<\\/\1", code)


def _json_for_script(value: Any) -> str:
    """JSON for a ``<script>``: every ``<`` escaped as ``\\u003c`` (same string value)."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def bundle_html() -> str:
    """A ``<script>`` element that loads the bundle (once per page)."""
    return (
        "<script type='text/javascript' data-psanalytics='vega-bundle'>\n"
        + _script_text(javascript_bundle())
        + "\n</script>"
    )


def chart_html(spec: dict[str, Any], *, include_bundle: bool, embed_options: Any = None) -> str:
    """The HTML of one chart: a ``div``, optionally the bundle, and a script that embeds the
    spec as soon as the bundle is there (or says why it is not)."""
    div = f"psa-vis-{uuid.uuid4().hex}"
    opts = dict(_EMBED_OPTIONS)
    if embed_options:
        opts.update(embed_options)
    spec_js = _json_for_script(spec)
    opts_js = _json_for_script(opts)
    embed = f"""<script type='text/javascript'>
(function (spec, opts) {{
  var el = document.getElementById("{div}");
  if (!el) return;
  function fail(message) {{
    el.innerHTML = "";
    var pre = document.createElement("pre");
    pre.className = "psa-chart-error";
    pre.style.color = "#cf222e";
    pre.textContent = message;
    el.appendChild(pre);
  }}
  function draw() {{
    window.psaVega.embed(el, spec, opts).catch(function (err) {{ fail("chart error: " + err); }});
  }}
  if (window.psaVega) {{ draw(); return; }}
  var timer = setTimeout(function () {{
    window.removeEventListener("psa-vega-ready", ready);
    if (window.psaVega) {{ draw(); return; }}
    fail("This chart needs the vega bundle, which the first chart output of the kernel " +
         "session carries and which is not on this page (that output was cleared or " +
         "deleted). Re-run this cell to draw it.");
  }}, {_WAIT_MS});
  function ready() {{ clearTimeout(timer); window.removeEventListener("psa-vega-ready", ready); draw(); }}
  window.addEventListener("psa-vega-ready", ready);
}})({spec_js}, {opts_js});
</script>"""
    parts = [f"<div id='{div}' class='psa-chart'></div>"]
    if include_bundle:
        parts.append(bundle_html())
    parts.append(embed)
    return "\n".join(parts)


def _text(spec: dict[str, Any]) -> str:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if isinstance(title, list):
        title = " ".join(map(str, title))
    return f"<Chart: {title}>" if title else "<Chart>"


def _carry_bundle() -> bool:
    """Whether the next chart output must carry the bundle (see the module docstring)."""
    cell = _state["current_cell"]
    if not _state["sent"] or cell is None or cell == _state["cell"]:
        _state["sent"], _state["cell"] = True, cell
        return True
    return False


def mimebundle(
    spec: dict[str, Any], *, include_bundle: bool | None = None, **metadata: Any
) -> dict[str, str]:
    """The output of one chart: ``text/html`` (drawn offline) and ``text/plain``."""
    carry = _carry_bundle() if include_bundle is None else include_bundle
    return {
        "text/html": chart_html(spec, include_bundle=carry, embed_options=metadata.get("embed_options")),
        "text/plain": _text(spec),
    }


def renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """The Altair renderer function registered as :data:`RENDERER`."""
    return mimebundle(spec, **metadata)


def _pre_run_cell(info: Any) -> None:
    _state["current_cell"] = getattr(info, "cell_id", None)


def _watch_cells() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    if ip is None or getattr(ip, "_psa_offline_watch", False):
        return
    ip.events.register("pre_run_cell", _pre_run_cell)
    ip._psa_offline_watch = True


def _alt() -> Any:
    mod = sys.modules.get("altair")
    if mod is not None and hasattr(mod, "renderers"):
        return mod
    import altair  # (charts.py imports it faster; it enables this renderer too)

    return altair


def enable(*, force: bool = False) -> bool:
    """Register the ``"psanalytics"`` renderer and make it Altair's active one when Altair
    still uses its default (CDN) renderer, or always with ``force=True``. Returns whether
    it is active."""
    alt = _alt()

    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, renderer)
    _watch_cells()
    if force or alt.renderers.active in ("default", "html"):
        alt.renderers.enable(RENDERER)
    return alt.renderers.active == RENDERER


def chart_output(chart: Any) -> Any:
    """What a widget puts in its ``Output`` for ``chart``: a small HTML that waits for the
    widget's own bundle when our renderer is active, else the chart itself (another
    renderer, e.g. ``svg`` in ``make demo``)."""
    alt = _alt()
    if alt.renderers.active != RENDERER:
        return chart
    from IPython.display import HTML

    return HTML(chart_html(chart.to_dict(), include_bundle=False))


def widget_bundle() -> Any:
    """An ``ipywidgets.Output`` holding the bundle (for a widget's own charts), or None when
    our renderer is not active."""
    alt = _alt()
    if alt.renderers.active != RENDERER:
        return None
    import ipywidgets as w
    from IPython.display import HTML

    out = w.Output(layout=w.Layout(display="none"))
    out.append_display_data(HTML(bundle_html()))
    return out
