"""ipywidgets explorers for track events.

- :class:`EventExplorer` ``(events)``: date range, event types, countries and a free KQL
  ``where`` clause, linked to charts and a table.
- :class:`VisitorPlayer` ``(events, device_id=None)``: pick a visitor and step (or play)
  through their events over time, with the timeline chart, each event's details and the
  session boundaries marked.
- :class:`KqlConsole` ``(client)``: a query editor with a Run button, the result table,
  its footer, a chart for ``| render``, and errors with a caret under the query.

Each is an ``ipywidgets.VBox`` (display it, or put it in a layout). They can also be
driven from code, which is how the tests use them: set a control's ``value`` and read
``.filtered`` / ``.charts`` / ``.table.value`` back.
"""

from __future__ import annotations

import html
import json
import time
from datetime import date, timedelta
from typing import Any

import ipywidgets as w
import polars as pl

from psanalytics.errors import PsaError
from psanalytics.jupyter import charts as _charts
from psanalytics.jupyter import offline as _offline
from psanalytics.jupyter.tables import frame_html

__all__ = ["EventExplorer", "KqlConsole", "VisitorPlayer", "frame_html"]

_ERROR_STYLE = "color:#cf222e;white-space:pre;font-family:monospace;margin:0"
_NOTE_STYLE = "font-size:85%;color:#57606a"


def _error_html(exc: BaseException) -> str:
    text = str(exc)
    suggestion = getattr(exc, "suggestion", None)
    if suggestion and suggestion not in text:
        text += f"\nsuggestion: {suggestion}"
    return f"<pre style='{_ERROR_STYLE}'>{html.escape(type(exc).__name__ + ': ' + text)}</pre>"


def _show(out: w.Output, obj: Any) -> None:
    out.outputs = ()  # (clear_output() would print terminal escapes outside a kernel)
    if obj is not None:
        if isinstance(obj, _charts.alt.TopLevelMixin):
            obj = _offline.chart_output(obj)  # waits for the widget's own vega bundle
        out.append_display_data(obj)


def _with_bundle(children: list[Any]) -> list[Any]:
    """The widget's children plus a hidden output carrying the vega bundle (charts offline)."""
    bundle = _offline.widget_bundle()
    return [bundle, *children] if bundle is not None else children


def _require(events: Any, columns: tuple[str, ...], who: str) -> pl.DataFrame:
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    if not isinstance(events, pl.DataFrame):
        raise PsaError(f"{who}: expected a Polars DataFrame of events, got {type(events).__name__}")
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise PsaError(f"{who}: the frame has no column(s) {', '.join(missing)}")
    return events


# --------------------------------------------------------------------------- EventExplorer


class EventExplorer(w.VBox):
    """Filter an events frame with a date range, event types, countries and a KQL ``where``
    clause; the charts (events over time, top pages, countries) and the table follow.

    Driven from code: ``ex.days.value = (first, last)`` (dates), ``ex.types.value = (...)``,
    ``ex.countries.value = (...)``, ``ex.where.value = "..."`` then ``ex.apply()``; read
    ``ex.filtered``, ``ex.charts[name].data`` and ``ex.table.value``. An empty selection of
    types or countries means all.
    """

    def __init__(self, events: pl.DataFrame | pl.LazyFrame, *, table_rows: int = 20) -> None:
        self.events = _require(events, ("EventTime", "EventType", "CountryCode"), "EventExplorer")
        self.table_rows = table_rows
        self.filtered: pl.DataFrame = self.events
        self.charts: dict[str, Any] = {}
        self.error: str | None = None
        if self.events.height:
            lo = self.events["EventTime"].min().date()
            hi = self.events["EventTime"].max().date()
        else:
            lo = hi = date.today()
        day_list = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
        self.days = w.SelectionRangeSlider(
            options=[(d.isoformat(), d) for d in day_list],
            index=(0, len(day_list) - 1),
            description="Days (UTC)",
            continuous_update=False,
            layout=w.Layout(width="640px"),
            style={"description_width": "90px"},
        )
        self.types = w.SelectMultiple(
            options=self._ranked("EventType"),
            rows=6,
            description="Event types",
            style={"description_width": "90px"},
        )
        self.countries = w.SelectMultiple(
            options=self._ranked("CountryCode"),
            rows=6,
            description="Countries",
            style={"description_width": "70px"},
        )
        self.where = w.Text(
            placeholder='KQL: PageUri contains "checkout" and User.Email != ""',
            description="where",
            layout=w.Layout(width="640px"),
            continuous_update=False,
        )
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="filter")
        self.reset_button = w.Button(description="Reset", icon="undo")
        self.status = w.HTML()
        self.over_time = w.Output()
        self.pages = w.Output()
        self.country_chart = w.Output()
        self.table = w.HTML()
        self.apply_button.on_click(lambda _b: self.apply())
        self.reset_button.on_click(lambda _b: self.reset())
        for control in (self.days, self.types, self.countries, self.where):
            control.observe(lambda _c: self.apply(), names="value")
        super().__init__(
            _with_bundle([
                self.days,
                w.HBox([self.types, self.countries]),
                w.HBox([self.where, self.apply_button, self.reset_button]),
                self.status,
                self.over_time,
                w.HBox([self.pages, self.country_chart]),
                self.table,
            ])
        )
        self.apply()

    def _ranked(self, column: str) -> list[tuple[str, str]]:
        counts = (
            self.events.group_by(column)
            .agg(pl.len().alias("n"))
            .sort(["n", column], descending=[True, False])
        )
        return [(f"{v or '(none)'} ({n:,})", v) for v, n in counts.iter_rows()]

    def selection(self) -> pl.Expr:
        """The Polars predicate of the current date/type/country controls."""
        first, last = self.days.value if self.days.options else (None, None)
        pred = pl.lit(True)
        if first is not None:
            day = pl.col("EventTime").dt.date()
            pred = pred & (day >= first) & (day <= last)
        if self.types.value:
            pred = pred & pl.col("EventType").is_in(list(self.types.value))
        if self.countries.value:
            pred = pred & pl.col("CountryCode").is_in(list(self.countries.value))
        return pred

    def apply(self) -> pl.DataFrame:
        """Re-filter and redraw (called on every control change)."""
        from psanalytics.query.kql import KqlError, kql

        started = time.perf_counter()
        frame = self.events.filter(self.selection())
        clause = self.where.value.strip()
        self.error = None
        if clause:
            try:
                frame = kql(f"Events\n| where {clause}", frame, limit=None)
            except KqlError as exc:
                self.error = str(exc)
                self.status.value = _error_html(exc)
                return self.filtered
        self.filtered = frame
        elapsed = time.perf_counter() - started
        self.status.value = (
            f"<b>{frame.height:,}</b> of {self.events.height:,} events · "
            f"{frame['DeviceId'].n_unique() if 'DeviceId' in frame.columns else 0:,} visitors · "
            f"{elapsed * 1000:.0f} ms"
        )
        self._draw()
        return frame

    def _draw(self) -> None:
        frame = self.filtered
        self.charts = {}
        if frame.height:
            self.charts["over_time"] = _charts.events_over_time(frame)
            if "PageUri" in frame.columns and (frame["PageUri"] != "").any():
                self.charts["pages"] = _charts.top_pages(frame, top=10).properties(width=340)
            self.charts["countries"] = _charts.country_bars(frame, top=10).properties(width=260)
        _show(self.over_time, self.charts.get("over_time"))
        _show(self.pages, self.charts.get("pages"))
        _show(self.country_chart, self.charts.get("countries"))
        cols = [
            c
            for c in ("EventTime", "EventType", "DeviceId", "CountryCode", "PageUri", "Value")
            if c in frame.columns
        ]
        self.table.value = frame_html(frame.select(cols), self.table_rows)

    def reset(self) -> None:
        """Clear every filter."""
        with self.hold_trait_notifications():
            self.where.value = ""
            self.types.value = ()
            self.countries.value = ()
            if self.days.options:
                self.days.index = (0, len(self.days.options) - 1)
        self.apply()


# --------------------------------------------------------------------------- VisitorPlayer


class VisitorPlayer(w.VBox):
    """Step (or play) through one visitor's events over time.

    The timeline chart marks each session start with a dashed rule and rings the current
    event; the details panel shows the event (time, type, page, value, payload) and says
    when it starts a new session. Sessions come from :func:`psanalytics.sessionize` when it
    is available, else a new session starts after more than ``timeout`` of inactivity.

    From code: ``player.device.value = "<DeviceId>"``, ``player.step.value = 3``,
    ``player.next()`` / ``player.previous()``; read ``player.frame``, ``player.current``,
    ``player.chart`` and ``player.details.value``.
    """

    def __init__(
        self,
        events: pl.DataFrame | pl.LazyFrame,
        device_id: str | None = None,
        *,
        timeout: str = "30m",
        max_devices: int = 200,
        interval_ms: int = 800,
    ) -> None:
        self.events = _require(events, ("DeviceId", "EventTime", "EventType"), "VisitorPlayer")
        if self.events.height == 0:
            raise PsaError("VisitorPlayer: the events frame is empty")
        self.timeout = timeout
        counts = (
            self.events.group_by("DeviceId")
            .agg(pl.len().alias("n"))
            .sort(["n", "DeviceId"], descending=[True, False])
        )
        if device_id is None:
            device_id = _charts.pick_visitor(self.events)
        elif device_id not in set(counts["DeviceId"].to_list()):
            raise PsaError(f"VisitorPlayer: no events for DeviceId {device_id!r}")
        options = counts.head(max_devices)
        if device_id not in set(options["DeviceId"].to_list()):
            options = pl.concat([counts.filter(pl.col("DeviceId") == device_id), options])
        self.device = w.Dropdown(
            options=[(f"{d} ({n:,} events)", d) for d, n in options.iter_rows()],
            value=device_id,
            description="Visitor",
            layout=w.Layout(width="520px"),
        )
        self.play = w.Play(value=0, min=0, max=0, step=1, interval=interval_ms, description="Play")
        # The step lives in the kernel: Play and the slider are linked here, not with a
        # browser-side jslink (which echoed stale values back and lost steps made from code).
        self.step = w.IntSlider(value=0, min=0, max=0, description="Event", continuous_update=True)
        self.prev_button = w.Button(
            icon="step-backward", tooltip="previous event", layout=w.Layout(width="40px")
        )
        self.next_button = w.Button(
            icon="step-forward", tooltip="next event", layout=w.Layout(width="40px")
        )
        self.prev_button.on_click(lambda _b: self.previous())
        self.next_button.on_click(lambda _b: self.next())
        self.summary = w.HTML()
        self.timeline = w.Output()
        self.details = w.HTML()
        self.frame: pl.DataFrame = pl.DataFrame()
        self.chart: Any = None
        self.device.observe(lambda c: self._load(c["new"]), names="value")
        self.step.observe(self._on_step, names="value")
        self.play.observe(self._on_play, names="value")
        super().__init__(
            _with_bundle([
                self.device,
                w.HBox([self.play, self.prev_button, self.step, self.next_button]),
                self.summary,
                self.timeline,
                self.details,
            ])
        )
        self._load(device_id)

    def _visitor(self, device_id: str) -> pl.DataFrame:
        mine = self.events.filter(pl.col("DeviceId") == device_id)
        if "session_index" not in mine.columns:
            try:
                from psanalytics.sessions import sessionize

                mine = sessionize(mine, timeout=self.timeout).events
            except ImportError:
                pass  # charts.visitor_frame cuts sessions at gaps > timeout
        return _charts.visitor_frame(mine, device_id, timeout=self.timeout)

    def _load(self, device_id: str) -> None:
        self.frame = self._visitor(device_id)
        n = self.frame.height
        with self.hold_trait_notifications():
            self.step.max = n - 1
            self.play.max = n - 1
            self.step.value = 0
            self.play.value = 0
        sessions = self.frame["session"].n_unique()
        span = self.frame["EventTime"].max() - self.frame["EventTime"].min()
        self.summary.value = (
            f"<b>{n:,}</b> events in <b>{sessions}</b> session(s) over {span} · "
            f"{self.frame['EventType'].n_unique()} event types"
        )
        self._render()

    def _on_play(self, change: dict[str, Any]) -> None:
        if self.step.value != change["new"]:
            self.step.value = change["new"]

    def _on_step(self, change: dict[str, Any]) -> None:
        if self.play.value != change["new"]:
            self.play.value = change["new"]
        self._render()

    @property
    def current(self) -> dict[str, Any]:
        """The current event as a dict (with ``session`` and ``step``)."""
        return self.frame.row(self.step.value, named=True)

    def next(self) -> None:
        """Go to the next event (stays on the last one)."""
        self.step.value = min(self.step.value + 1, self.step.max)

    def previous(self) -> None:
        """Go to the previous event (stays on the first one)."""
        self.step.value = max(self.step.value - 1, 0)

    def _render(self) -> None:
        i = self.step.value
        if not 0 <= i < self.frame.height:
            return
        self.chart = _charts.visitor_timeline(self.frame, current=i)
        _show(self.timeline, self.chart)
        row = self.current
        new_session = i == 0 or self.frame["session"][i - 1] != row["session"]
        gap = (
            ""
            if i == 0
            else f" · {row['EventTime'] - self.frame['EventTime'][i - 1]} after the previous event"
        )
        fields = [
            ("time", f"{row['EventTime']:%Y-%m-%d %H:%M:%S.%f} UTC"),
            ("event", row["EventType"]),
            (
                "session",
                f"{row['session']}" + (" · <b>new session starts here</b>" if new_session else ""),
            ),
        ]
        for col in ("Value", "PageUri", "PageTitle", "CountryCode", "City", "SessionId"):
            if col in row and row[col]:
                fields.append((col, html.escape(str(row[col]))))
        user = row.get("User")
        if isinstance(user, dict) and (user.get("Email") or user.get("Name")):
            fields.append(
                ("User", html.escape(f"{user.get('Name', '')} <{user.get('Email', '')}>"))
            )
        payload = row.get("Payload")
        if payload:
            try:
                pretty = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
            except (TypeError, ValueError):
                pretty = str(payload)
            fields.append(("Payload", f"<pre style='margin:0'>{html.escape(pretty)}</pre>"))
        rows_html = "".join(
            f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{k}</th><td>{v}</td></tr>"
            for k, v in fields
        )
        self.details.value = (
            f"<div>event {i + 1:,} of {self.frame.height:,}{gap}</div><table>{rows_html}</table>"
        )


# --------------------------------------------------------------------------- KqlConsole


class KqlConsole(w.VBox):
    """A small KQL editor: type a query, Run, see the table, the footer and the chart.

    ``client`` is a :class:`~psanalytics.api.profile_store.ProfileStore` (queries go to its
    preview endpoint, at most 1,000 rows) or an events frame (local engine, same cap).
    Errors show the query line with a caret and the suggestion.

    From code: ``console.query.value = "..."; console.run()``; read ``console.result``,
    ``console.error``, ``console.table.value``, ``console.footer.value``, ``console.chart``.
    """

    def __init__(self, client: Any, *, query: str = "Events\n| take 10", rows: int = 20) -> None:
        self.client = client
        self.rows = rows
        self.local = isinstance(client, pl.DataFrame | pl.LazyFrame)
        self.query = w.Textarea(
            value=query,
            rows=6,
            layout=w.Layout(width="760px"),
            placeholder="Events | where EventType == 'order' | take 10",
        )
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.run_button.on_click(lambda _b: self.run())
        self.footer = w.HTML()
        self.table = w.HTML()
        self.chart_out = w.Output()
        self.result: pl.DataFrame | None = None
        self.error: str | None = None
        self.chart: Any = None
        engine = "local engine on a frame" if self.local else "Profile Store preview endpoint"
        super().__init__(
            _with_bundle([
                self.query,
                w.HBox([self.run_button, w.HTML(f"<span style='{_NOTE_STYLE}'>{engine}</span>")]),
                self.footer,
                self.chart_out,
                self.table,
            ])
        )

    def run(self) -> pl.DataFrame | None:
        """Run the query in the editor; returns the result frame (None on error)."""
        from psanalytics.jupyter.magic import PREVIEW_CAP, query_schema, typed_remote

        text = self.query.value.strip()
        self.error, self.chart, self.result = None, None, None
        _show(self.chart_out, None)
        started = time.perf_counter()
        try:
            if self.local:
                from psanalytics.query.kql import execute

                res = execute(text, {"Events": self.client}, limit=PREVIEW_CAP)
                frame, truncated, render = res.frame, bool(res.truncated), res.render
            else:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    frame = self.client.preview(text)
                truncated = bool(getattr(frame, "truncated", frame.height >= PREVIEW_CAP))
                schema, render = query_schema(text)
                frame = typed_remote(frame, schema)
        except PsaError as exc:
            self.error = str(exc)
            self.footer.value = _error_html(exc)
            self.table.value = ""
            return None
        elapsed = time.perf_counter() - started
        self.result = frame
        cap = f"truncated at the {PREVIEW_CAP:,}-row cap" if truncated else "complete"
        self.footer.value = (
            f"<div style='{_NOTE_STYLE}'>kql {'local' if self.local else 'remote'} · "
            f"{frame.height:,} rows · {elapsed * 1000:.0f} ms · {cap}</div>"
        )
        self.table.value = frame_html(frame, self.rows)
        if render is not None and frame.height:
            try:
                self.chart = _charts.render(frame, render)
            except _charts.ChartDataError as exc:
                self.footer.value += (
                    f"<div style='{_NOTE_STYLE}'>render: {html.escape(str(exc))}</div>"
                )
            _show(self.chart_out, self.chart)
        return frame
