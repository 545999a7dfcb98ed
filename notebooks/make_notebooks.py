"""Write the psanalytics notebooks (clean: no outputs, no execution counts, stable cell ids).

    .venv/bin/python notebooks/make_notebooks.py            # all notebooks
    .venv/bin/python notebooks/make_notebooks.py 02         # the ones whose name starts so

Edit the cells here, not in the .ipynb files: this script is the source of truth, so a
notebook never gets committed with outputs. Each notebook runs top to bottom with no
credentials (``psanalytics.connect()`` starts the embedded emulator with the sample data)
and against a real account when ``PSANALYTICS_URL`` / ``PSANALYTICS_API_KEY`` are set.

Why this file is long: it is the text of six notebooks (their markdown and code cells, one
list per notebook); the code that writes them is the last 40 lines. Splitting the cells
over files would only scatter one notebook's story.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# A cell is ("md", text), ("code", text) or ("code", text, [tags]).
Cell = tuple

CONNECT = """\
import polars as pl
from datetime import timedelta

import psanalytics as ps

ps.Config.set_progress(False)  # no progress bars in this notebook (PSANALYTICS_PROGRESS=0 does the same)
store = ps.connect()  # PSANALYTICS_URL / PSANALYTICS_API_KEY, else the embedded emulator
store"""

LAST_WEEK = """\
# The week up to the most recent event (end is exclusive, so step just past it).
latest = store.preview("Events | top 1 by EventTime")["EventTime"][0]
week_end = latest + timedelta(microseconds=1)
week_start = week_end - timedelta(days=7)
print(f"{week_start:%Y-%m-%d %H:%M} .. {week_end:%Y-%m-%d %H:%M} UTC")"""

NB01: list[Cell] = [
    ("md", """\
# 01 · Quickstart: from Profile Store to a Polars frame and charts

Connect, fetch a week of track events (with and without a `$filter`), look at the frame,
and chart it. With no credentials, `ps.connect()` starts an in-process emulator of the
Profile Store API seeded with 50,000 sample events; set `PSANALYTICS_URL` and
`PSANALYTICS_API_KEY` to run the same cells against your account."""),
    ("code", CONNECT),
    ("code", LAST_WEEK),
    ("md", """\
## Fetch a week

`store.events()` returns **every** matching event exactly once: it splits the time range
into windows that stay under the API's 10,000-row result window and pages each one."""),
    ("code", """\
events = store.events(start=week_start, end=week_end)
print(f"{events.height:,} events from {events['DeviceId'].n_unique():,} devices")
events.head()"""),
    ("md", """\
A filter can be a `$filter` string in the Profile Store dialect or a builder expression;
the builder renders correct literals (quotes, 7-digit UTC times) for you."""),
    ("code", """\
page_views_filter = ps.F.EventType == "epiPageView"
print(page_views_filter)
page_views = store.events(page_views_filter, start=week_start, end=week_end)
print(f"{page_views.height:,} page views")"""),
    ("code", """\
# The same count without fetching rows: one request.
store.count("EventType eq 'epiPageView'", start=week_start, end=week_end)"""),
    ("md", """\
## The frame

Column names are the API's own, so a `$filter` or KQL query written for the API works on
the frame unchanged. `EventTime` keeps all 7 fractional digits (UTC), strings are never
null, `User` is a struct and `Payload` is the event's JSON text."""),
    ("code", "events.schema"),
    ("code", """\
(
    events.group_by("EventType")
    .agg(events=pl.len(), visitors=pl.col("DeviceId").n_unique())
    .sort("events", descending=True)
)"""),
    ("code", """\
# Payload fields: read them with Polars' JSON path functions.
(
    events.select(
        "EventType",
        language=pl.col("Payload").str.json_path_match("$.epi.language"),
    )
    .filter(pl.col("language").is_not_null())
    .group_by("language")
    .agg(events=pl.len())
    .sort("events", descending=True)
)"""),
    ("code", """\
# Identified visitors: events that carry a user e-mail.
known = events.filter(pl.col("User").struct.field("Email") != "")
print(f"{known.height:,} events from {known['DeviceId'].n_unique():,} identified devices")"""),
    ("md", """\
## Charts

`psanalytics.jupyter.charts` aggregates in Polars and ships only the aggregate to the
browser (never more than a few thousand rows). Each function returns an Altair chart you
can keep composing."""),
    ("code", """\
from psanalytics.jupyter import charts

charts.events_over_time(events)"""),
    ("code", "charts.top_pages(events, top=10) | charts.country_bars(events, metric=\"visitors\")"),
    ("code", """\
charts.events_over_time(events, every="1d", by=None).properties(
    title="Events per day", height=160
)"""),
    ("md", """\
## Explore

`EventExplorer` links a date range, event types, countries and a free KQL `where` clause
to the charts and a table."""),
    ("code", """\
from psanalytics.jupyter.widgets import EventExplorer

explorer = EventExplorer(events)
explorer"""),
    ("code", """\
# Widgets can be driven from code too.
explorer.where.value = 'PageUri contains "checkout"'
print(f"{explorer.filtered.height:,} events match")"""),
]

NB02: list[Cell] = [
    ("md", """\
# 02 · KQL preview: the `%kql` magic, local and remote

`%load_ext psanalytics` registers one magic, `%kql` (line) / `%%kql` (cell). Queries run on
the Profile Store **preview** endpoint of the connected client (at most 1,000 rows), or with
`--local FRAME` on a frame of this notebook with the same semantics. The result is a real
Polars DataFrame."""),
    ("code", "%load_ext psanalytics"),
    ("code", CONNECT),
    ("code", LAST_WEEK),
    ("code", """\
events = store.events(start=week_start, end=week_end)
print(f"{events.height:,} events in the local frame")"""),
    ("md", "## Remote: the preview endpoint"),
    ("code", '%kql Events | where EventType == "epiPageView" | project EventTime, DeviceId, PageUri | take 5'),
    ("md", """\
`name <<` binds the result; `--param` injects typed `let` statements (here from notebook
variables), never text."""),
    ("code", """\
%%kql by_type <<  --param week_start --param week_end
Events
| where EventTime >= week_start and EventTime < week_end
| summarize events = count(), visitors = dcount(DeviceId) by EventType
| sort by events desc"""),
    ("code", """\
print(type(by_type))
by_type.filter(pl.col("events") > 1000)"""),
    ("md", """\
The footer says when a result was cut: the preview API returns at most 1,000 rows."""),
    ("code", "%kql Events | project EventTime, EventType, DeviceId"),
    ("code", "%kql --limit 3 Events | where EventType == 'order' | project EventTime, DeviceId, Value"),
    ("md", "## Local: the same engine on a frame of the notebook"),
    ("code", """\
%%kql --local events
Events
| summarize events = count(), visitors = dcount(DeviceId) by EventType
| sort by events desc"""),
    ("code", """\
# Literal values are typed by their look: a number, a string (a timespan, a datetime, a list).
%kql --local events --param n=3 --param kind=order Events | where EventType == kind | top n by EventTime | project EventTime, DeviceId"""),
    ("code", """\
# A name that is neither a column nor a let, but a variable of the notebook, becomes a typed let.
kind = "checkout"
%kql --local events Events | where EventType == kind | summarize visitors = dcount(DeviceId)"""),
    ("md", """\
## `--compare`: the same query on both engines

Runs the query locally and remotely and shows the difference (row counts, columns, the first
differing rows). `store.events()` returned every scope, while the preview reads one (the
client's, `default`): `--compare` runs the local side on that scope's rows too, and says
what each side read. On the same week, both engines agree."""),
    ("code", """\
%%kql cmp <<  --compare --local events --param week_start --param week_end
Events
| where EventTime >= week_start and EventTime < week_end
| summarize events = count() by EventType, CountryCode"""),
    ("code", "cmp.same"),
    ("md", """\
## Errors point at the query

Syntax and schema errors are found locally before any request, with the line, a caret and
a suggestion, instead of a traceback. (These cells are tagged `raises-exception`.)"""),
    ("code", "%%kql\nEvents\n| wher EventType == 'order'", ["raises-exception"]),
    ("code", '%kql Events | summarize count() by CountryCod', ["raises-exception"]),
    ("md", "## `| render` draws a chart (Altair), the data comes back unchanged"),
    ("code", """\
%%kql hourly <<  --local events
Events
| where EventType in ("epiPageView", "product", "order")
| summarize events = count() by bin(EventTime, 6h), EventType
| render timechart with (title="Events per 6 hours")"""),
    ("code", """\
%%kql --local events
Events
| summarize visitors = dcount(DeviceId) by CountryCode
| sort by visitors desc
| render barchart"""),
    ("code", """\
%%kql
Events
| summarize events = count() by EventType
| render piechart"""),
    ("md", "## Plan, output type, settings"),
    ("code", "%kql --local events --explain Events | where EventType == 'order' | summarize count() by CountryCode"),
    ("code", "%kql --local events --out pandas Events | summarize events = count() by CountryCode | sort by events desc"),
    ("code", """\
%config KqlMagic.display_limit = 5
%config KqlMagic"""),
    ("md", "## A small console"),
    ("code", """\
from psanalytics.jupyter.widgets import KqlConsole

console = KqlConsole(store, query="Events\\n| summarize events = count() by EventType\\n| render columnchart")
console.run()
console"""),
]


NB03: list[Cell] = [
    ("md", """\
# 03 · Sessions and journeys

Cut a week of events into sessions (per device, a new session after more than 30 minutes of
inactivity, 24-hour cap), look at the sessions table, then at journeys: funnels, step-to-step
transitions and the most common paths."""),
    ("code", CONNECT),
    ("code", LAST_WEEK),
    ("code", """\
events = store.events(start=week_start, end=week_end)
print(f"{events.height:,} events from {events['DeviceId'].n_unique():,} devices")"""),
    ("md", "## Sessionize"),
    ("code", """\
s = ps.sessionize(events, window=(week_start, week_end))
print(f"{s.sessions.height:,} sessions")
s.sessions.select(
    "session_id", "start_time", "duration_s", "n_events", "n_pageviews",
    "entry_page", "exit_page", "is_bounce", "is_engaged", "split_reason",
).head()"""),
    ("code", """\
s.sessions.select(
    sessions=pl.len(),
    median_events=pl.col("n_events").median(),
    median_duration_s=pl.col("duration_s").median(),
    bounce_rate=pl.col("is_bounce").mean(),
    engaged_rate=pl.col("is_engaged").mean(),
    cut_by_the_24h_cap=(pl.col("split_reason") == "max_duration").sum(),
    touching_the_window_edges=(pl.col("truncated_start") | pl.col("truncated_end")).sum(),
)"""),
    ("code", """\
from psanalytics.jupyter import charts

charts.session_length_histogram(s) | charts.session_duration_histogram(s)"""),
    ("md", """\
Every event now carries its session; Profile Store's own `SessionId` is kept as evidence and
compared (`source_session_ids` counts the distinct `SessionId`s inside each session)."""),
    ("code", """\
s.events.select("EventTime", "DeviceId", "EventType", "session_id", "session_index", "event_index_in_session").head()"""),
    ("code", """\
s.sessions.group_by("source_session_ids").agg(sessions=pl.len()).sort("source_session_ids")"""),
    ("code", """\
# Profile Store counts a new *visit* after 15 minutes: the compatibility preset.
visits = ps.sessionize(events, timeout="15m", minimal=True)
print(f"30-minute sessions: {s.sessions.height:,} · 15-minute visits: {visits.sessions.height:,}")"""),
    ("md", "## Who is behind a device: stitching"),
    ("code", """\
users = ps.stitch(events)
print(f"{users.height:,} identified devices, {users['is_shared'].sum():,} shared by several e-mails")
users.head()"""),
    ("md", """\
## Funnels

Ordered steps inside each session: a step counts only when it happens after the previous
one; repeats count once."""),
    ("code", """\
from psanalytics import journeys

steps = ["home", "product", "basket", "checkout", "order"]
funnel = journeys.funnel(s.events, steps)
funnel.select("step", "name", "entered", "conversion", "dropped", "median_time_to_step_s")"""),
    ("code", "charts.funnel(funnel, title='Shop funnel (per session)')"),
    ("code", """\
# The same funnel per device, with every step within one day of the first.
journeys.funnel(s.events, steps, within="device", window="1d").select("name", "entered", "conversion")"""),
    ("md", "## Transitions and paths"),
    ("code", """\
moves = journeys.transitions(s.events, level="event_type")
moves.sort("count", descending=True).head(8)"""),
    ("code", "charts.transition_heatmap(moves, top=12)"),
    ("code", """\
journeys.top_paths(s.events, level="event_type", max_steps=5, top=10)"""),
    ("md", """\
Landing pages: the page of each session's first event (`event_index_in_session` counts
from 1)."""),
    ("code", """\
landing = charts.top_pages(
    s.events.filter(pl.col("event_index_in_session") == 1), top=10, title="Landing pages"
)
landing"""),
]

NB04: list[Cell] = [
    ("md", """\
# 04 · Visitor-log replay into the Event API

Map Profile Store track events to Optimizely Event API *visitors*, write a dry run (the
exact request bodies), replay into an emulated Event API, check what arrived, and step
through one visitor's log with the `VisitorPlayer`. The replay target here is always an
in-process emulator: nothing leaves the machine."""),
    ("code", CONNECT),
    ("code", LAST_WEEK),
    ("code", """\
day = store.events(start=week_end - timedelta(days=1), end=week_end)
s = ps.sessionize(day)
print(f"{day.height:,} events, {day['DeviceId'].n_unique():,} visitors, {s.sessions.height:,} sessions")"""),
    ("md", """\
## Map track events to visitors

An `EventMap` says which Event API entity each `EventType` becomes (unmapped types keep
their name), where revenue lives in the Payload, and which attributes to send."""),
    ("code", """\
import json

from psanalytics import replay

event_map = replay.EventMap(
    events={
        "order": {"entity_id": "7001", "key": "purchase", "revenue": "total"},
        "epiPageView": "7002",
    },
)
visitors = replay.to_visitors(day, account_id="12345", event_map=event_map, sessions=s)
first = next(iter(visitors))
print(json.dumps(first, indent=2)[:1500])"""),
    ("md", "## Dry run: the exact bodies, written to a file"),
    ("code", """\
import tempfile
from pathlib import Path

workdir = Path(tempfile.mkdtemp(prefix="psanalytics-replay-"))
dry = replay.replay(day, dry_run=workdir / "bodies.jsonl", account_id="12345",
                    event_map=event_map, sessions=s)
print(dry)"""),
    ("code", """\
# Read the bodies back: one row per event, the reverse mapping.
logged = replay.from_visitor_log(workdir / "bodies.jsonl")
print(f"{logged.height:,} events in the dry-run log")
logged.head()"""),
    ("md", "## Replay into an emulated Event API"),
    ("code", """\
from psanalytics.emulator import Emulator

target = Emulator(events=ps.schema.empty_frame())
report = replay.replay(day, url=target.url, transport=target.transport(), account_id="12345",
                       event_map=event_map, sessions=s)
print(report)"""),
    ("md", "## What arrived"),
    ("code", """\
arrived = target.accepted_events()
print(f"{arrived.height:,} events accepted by the emulated Event API (sent: {day.height:,})")
arrived.head()"""),
    ("code", """\
# Replay again: event uuids are deterministic, so the service deduplicates the re-sends.
again = replay.replay(day, url=target.url, transport=target.transport(), account_id="12345",
                      event_map=event_map, sessions=s)
print(f"after a second replay: {target.accepted_events().height:,} events")"""),
    ("md", """\
## Step through one visitor

The `VisitorPlayer` plays a visitor's events over time: the timeline marks each session
start, the ring is the current event and the panel shows its details."""),
    ("code", """\
from psanalytics.jupyter.widgets import VisitorPlayer

player = VisitorPlayer(s.events)
player"""),
    ("md", """\
The player's step lives in the kernel, so driving it from code and clicking in the browser
stay in step. Its default visitor is a human-looking one: the most active device that came
back (two or more sessions), with no session over an hour or 60 events
(`charts.pick_visitor`)."""),
    ("code", """\
player.next()
player.next()
player.next()
player.step.value, player.current["EventType"], player.current["session"]"""),
]

NB05: list[Cell] = [
    ("md", """\
# 05 · Move the history to Optimizely Data Platform (ODP)

Profile Store is deprecated; its vendor sends users to ODP. This notebook maps Profile
Store track events to ODP events, looks at the mapping and the exact request bodies (a
dry run), sends them with the customers' profiles to an emulated ODP, and reconciles
source and destination per day and event type: the table a team shows before switching
Profile Store off. Everything runs in-process: nothing leaves the machine."""),
    ("code", CONNECT),
    ("code", LAST_WEEK),
    ("code", """\
day = store.events(start=week_end - timedelta(days=1), end=week_end)
print(f"{day.height:,} events from {day['DeviceId'].n_unique():,} devices")"""),
    ("md", """\
## The mapping

Standard ODP events where a Profile Store type fits (page views, product views, baskets,
wish lists, orders, searches, campaign mail); anything else is sent as a custom type and
*reported* (`how == "custom"`), never guessed silently. An `OdpMap` overrides any of it."""),
    ("code", """\
from psanalytics import replay

replay.mapping_table(day)"""),
    ("code", """\
odp_map = replay.OdpMap(events={
    "epiHeroBlockClick": "promotion/click",      # type/action
    "epiVideoBlockView": {"skip": True},         # not moved
})
replay.mapping_table(day, odp_map)"""),
    ("code", """\
import json

order = day.filter(pl.col("EventType") == "order").head(1)
print(json.dumps(replay.to_odp_events(order, odp_map=odp_map)[0], indent=2))"""),
    ("md", """\
## Dry run: the exact bodies

Arrays of at most 500 events, one body per line; nothing is sent."""),
    ("code", """\
import tempfile
from pathlib import Path

workdir = Path(tempfile.mkdtemp(prefix="psanalytics-odp-"))
dry = replay.replay(day, to="odp", dry_run=workdir / "odp-bodies.jsonl", mapping=odp_map)
print(dry)"""),
    ("code", """\
first_body = json.loads((workdir / "odp-bodies.jsonl").read_text().splitlines()[0])
print(f"{len(first_body)} events in the first body; its first event:")
print(json.dumps(first_body[0], indent=2))"""),
    ("md", """\
## Send to an emulated ODP, with the customers

`profiles=True` also sends one customer update per (e-mail, device) seen together, to
`/v3/profiles` at the documented 10 requests/second. The emulator checks `x-api-key`
(its own random key here; a real run reads `PSANALYTICS_ODP_API_KEY`)."""),
    ("code", """\
from psanalytics.emulator import Emulator

odp = Emulator(events=ps.schema.empty_frame())
report = replay.replay(day, url=odp.url, transport=odp.transport(), to="odp",
                       api_key=odp.odp_api_key, mapping=odp_map, profiles=True)
print(report)"""),
    ("code", """\
state = odp.odp.state(limit=0)
{k: state[k] for k in ("accepted", "duplicates", "rejected_requests", "by_type", "customers")}"""),
    ("code", "odp.odp.events_frame().head()"),
    ("md", """\
## Reconcile

Per day and event type: read, mapped, sent, accepted by the destination (found by each
event's `idempotence_id`), rejected, failed, and the difference. Every row should be 0."""),
    ("code", """\
table = report.reconcile(odp)
table"""),
    ("code", """\
from psanalytics.replay.reconcile import summary

print(summary(table))
replay.differences(table)"""),
    ("md", """\
## Sending twice is safe

Each event's `idempotence_id` is a uuid5 of its TrackId (or content), so ODP recognises a
re-send: the second run adds nothing, and the reconciliation counts the duplicates."""),
    ("code", """\
again = replay.replay(day, url=odp.url, transport=odp.transport(), to="odp",
                      api_key=odp.odp_api_key, mapping=odp_map)
print(f"accepted after two runs: {odp.odp.state(limit=0)['accepted']:,}")
again.reconcile(odp).select(pl.sum("mapped"), pl.sum("accepted"), pl.sum("duplicates"), pl.sum("difference"))"""),
    ("md", """\
## Profile Store's own profiles

`store.profiles()` reads `api/v2.0/Profiles` exactly once per profile, past the
10,000-row window as for events (windows on `FirstSeen`); the filter is the API's own
(`DeviceIds eq <guid>`, `Info.Email eq a@b.c`, `Visits gt 3`). `profiles=` moves them to
ODP as customer updates, one per (profile, device): e-mail, device, names, visits, first
and last seen, and the profile's `Info` fields."""),
    ("code", """\
profiles = store.profiles("Info.Email ne null")
print(f"{profiles.height:,} profiles with an e-mail address")
profiles.select("ProfileId", "DeviceIds", "Info", "FirstSeen", "LastSeen", "Visits").head()"""),
    ("code", """\
moved = replay.replay(ps.schema.empty_frame(), url=odp.url, transport=odp.transport(), to="odp",
                      api_key=odp.odp_api_key, profiles=profiles)
print(moved)
first = replay.encode_odp_customers(profiles.head(1))["json"][0]
print(json.dumps(json.loads(first), indent=2))"""),
]

NB06: list[Cell] = [
    ("md", """\
# 06 · Funnels, retention, paths and attribution

The analyses people run next on web events, on the 50,000-event sample (the same code takes
`store.events(...)`, an export read with `ps.read_events(...)`, or any canonical frame):
funnels with a breakdown, exclusions and per-step windows, time to convert, retention
cohorts, paths after (or before) a step as a Sankey diagram, GA4's default channel grouping
and first/last/linear/position attribution of orders and their revenue."""),
    ("code", """\
import polars as pl

import psanalytics as ps
from psanalytics import journeys
from psanalytics.jupyter import charts

ps.Config.set_progress(False)  # no progress bars in this notebook (PSANALYTICS_PROGRESS=0 does the same)
events = ps.samples.default_events()
s = ps.sessionize(events)
print(f"{events.height:,} events, {s.sessions.height:,} sessions, {events['DeviceId'].n_unique():,} devices")"""),
    ("md", """\
## A funnel with a breakdown

Steps in order inside each session; every journey is credited with its best attempt, and
the breakdown is read on that attempt's first event, so the countries add up to the
funnel without breakdown."""),
    ("code", """\
steps = ["product", "basket", "checkout", "order"]
funnel = journeys.funnel(s.events, steps)
funnel.select("step", "name", "entered", "conversion", "drop_off_rate", "time_to_step_p50_s", "time_to_step_p90_s")"""),
    ("code", "charts.funnel(funnel, title='Product to order (per session)')"),
    ("code", """\
by_country = journeys.funnel(s.events, steps, breakdown="CountryCode")
assert by_country.group_by("step").agg(pl.col("entered").sum()).sort("step")["entered"].equals(funnel["entered"])
charts.funnel_breakdown(by_country)"""),
    ("md", """\
## Orders of steps, windows and exclusions

`order="strict"` needs each step to be the very next event; `order="any"` takes the steps in
any order. Per device, allow a day from product to order but only an hour from checkout to
order, and cancel a conversion when the visitor goes back to a category page between basket
and order."""),
    ("code", """\
pl.DataFrame({
    "name": steps,
    "ordered": funnel["entered"],
    "strict": journeys.funnel(s.events, steps, order="strict")["entered"],
    "any": journeys.funnel(s.events, steps, order="any")["entered"],
    "per device, windows": journeys.funnel(
        events, steps, within="device", window="1d", step_windows=[None, None, "1h"]
    )["entered"],
    "... no category between basket and order": journeys.funnel(
        events, steps, within="device", window="1d", step_windows=[None, None, "1h"],
        exclude=[journeys.exclude("category", between=(2, 4))],
    )["entered"],
})"""),
    ("code", """\
# Steps as expressions get readable names with .alias or journeys.step(..., name=)
journeys.funnel(
    s.events,
    [
        (pl.col("EventType") == "home").alias("start page"),
        journeys.step(pl.col("PageUri").str.contains("/shop/"), name="any shop page"),
        "order",
    ],
).select("name", "entered", "conversion")"""),
    ("md", "## Time to convert"),
    ("code", """\
times = journeys.funnel_times(events, steps, within="device", window="7d")
charts.time_to_convert(journeys.time_histogram(times))"""),
    ("md", """\
## Retention

Devices by the day they were first seen, and the share that came back 1, 2, ... days
later (UTC days; weeks start on Monday). The triangle stops where the data does."""),
    ("code", """\
retention = journeys.retention(events, period="day")
journeys.retention_matrix(retention).head()"""),
    ("code", "charts.retention_heatmap(retention)"),
    ("code", """\
# Buyers: cohort by first order, coming back = ordering again
buyers = journeys.retention(events, period="day", cohort=pl.col("EventType") == "order",
                            returning=pl.col("EventType") == "order")
charts.retention_heatmap(buyers, title="Repeat orders by first-order day")"""),
    ("md", """\
## Paths

Where sessions go after the basket, on readable page types (`journeys.page_type` strips
hosts, query strings and ids from `PageUri` and maps paths to types)."""),
    ("code", """\
events.select(pl.col("PageUri").head(3), journeys.clean_url("PageUri").head(3).alias("path"),
              journeys.page_type("PageUri").head(3).alias("page type"))"""),
    ("code", """\
after_basket = journeys.paths(s.events, start="basket", steps=4, level="page_type", min_share=0.03)
charts.sankey(after_basket, title="After the basket (per session)")"""),
    ("code", """\
before_order = journeys.paths(s.events, end="order confirmation", steps=3, level="page_type", min_share=0.03)
charts.sankey(before_order, title="The last steps before an order")"""),
    ("md", """\
## Channels and attribution

Each session's channel follows GA4's default channel group rules (`journeys.CHANNEL_RULES`)
from its entry page's UTM tags and `gclid` and its referrer. Orders are credited to the
channels of the sessions of the same device in the 30 days before them; revenue stays per
currency."""),
    ("code", """\
sessions = journeys.channel(s.sessions)
sessions.group_by("channel").agg(sessions=pl.len(), engaged=pl.col("is_engaged").mean()).sort("sessions", descending=True)"""),
    ("code", """\
orders = journeys.orders(events)
models = pl.concat([
    journeys.attribute(orders, sessions, model=m, lookback="30d").with_columns(model=pl.lit(m))
    for m in ("first", "last", "linear", "position")
])
models.filter(pl.col("currency") == "SEK").pivot(on="model", index="channel", values="conversions")"""),
    ("code", "charts.attribution(models, title='Orders credited to channels, by model')"),
    ("code", "charts.attribution(journeys.attribute(orders, sessions, model='last'), value='revenue')"),
    ("md", """\
### Across devices, and what the ad platforms know

`key="user"` credits the sessions of every device stitched to the same e-mail (the same
stitching as `retention(key="user")`): an e-mail click on the phone can be the first touch of
an order placed on the laptop. `clicks=` takes what an ad platform reports per click (Google
Ads' `click_view` has the `gclid` and its ad network type) and applies GA4's ad-network rules
(`journeys.AD_NETWORK_RULES`) before the manual ones; here three of the sample's Google Ads
clicks are said to come from YouTube, the Display Network and a Performance Max campaign."""),
    ("code", """\
per_key = pl.concat([
    journeys.attribute(orders, sessions, model="first", key=k).with_columns(key=pl.lit(k))
    for k in ("DeviceId", "user")
])
per_key.filter(pl.col("currency") == "SEK").pivot(on="key", index="channel", values="conversions")"""),
    ("code", """\
gclid = pl.col("entry_page").str.extract(r"[?&]gclid=([^&#]*)", 1)
some = s.sessions.select(gclid.alias("click_id")).drop_nulls().head(3)["click_id"]
clicks = pl.DataFrame({"click_id": some, "platform": "Google Ads",
                       "ad_network_type": ["YOUTUBE_WATCH", "CONTENT", "MIXED"][: len(some)]})
placed = journeys.channel(s.sessions, clicks=clicks)
placed.filter(gclid.is_not_null()).group_by("channel").agg(sessions=pl.len()).sort("sessions", descending=True)"""),
]

NOTEBOOKS: dict[str, tuple[str, list[Cell]]] = {
    "01-quickstart": ("Quickstart", NB01),
    "02-kql-preview": ("KQL preview", NB02),
    "03-sessions-and-journeys": ("Sessions and journeys", NB03),
    "04-visitor-log-replay": ("Visitor-log replay", NB04),
    "05-move-to-odp": ("Move to ODP", NB05),
    "06-funnels-retention-attribution": ("Funnels, retention, paths and attribution", NB06),
}


def build(name: str, cells: list[Cell]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, spec in enumerate(cells):
        kind, text = spec[0], spec[1]
        tags = spec[2] if len(spec) > 2 else []
        cell = new_markdown_cell(text) if kind == "md" else new_code_cell(text)
        cell.id = f"{name[:2]}-{i:02d}"
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def main(argv: list[str]) -> None:
    prefixes = argv or [""]
    for name, (_title, cells) in NOTEBOOKS.items():
        if not any(name.startswith(p) for p in prefixes):
            continue
        nb = build(name, cells)
        nbformat.validate(nb)
        path = HERE / f"{name}.ipynb"
        path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)} ({len(cells)} cells)")


if __name__ == "__main__":
    main(sys.argv[1:])
