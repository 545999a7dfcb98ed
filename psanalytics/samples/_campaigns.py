"""Campaign mail events and the real-service shape (empty TrackIds, identical pairs,
``User.Info``, ``Headers``, fields the frame does not know) added to a generated frame;
each draws from its own generator, so every other event is unchanged."""

from __future__ import annotations

import numpy as np
import polars as pl

from psanalytics import schema
from psanalytics.errors import ArgumentError
from psanalytics.samples._world import _HOST, _NS, _TICK, _guids

# --------------------------------------------------------------------------- campaigns

_MAILINGS = ("Spring sale", "New arrivals", "Member days", "Summer trails", "Ski season",
             "Gift guide", "Autumn layers", "Outlet week")
_SEND_GAP_NS = 20_000_000  # a mail server's sequential dispatch: one recipient per 20 ms


def campaign_events(frame: pl.DataFrame, *, seed: int = 0, mailings: int = 3,
                    reach: float = 0.8, open_rate: float = 0.4,
                    click_rate: float = 0.3) -> pl.DataFrame:
    """E-mail campaign events for the known users of ``frame``, as the vendor's Campaign
    integration tracks them (``shared/spec/apis.md`` section 5).

    ``mailings`` mailings are sent at evenly spaced instants inside ``frame``'s time
    range, each to a share ``reach`` of the users with an e-mail (one every 20 ms):
    ``epiCampaignMailingtouser`` per recipient, ``epiCampaignOpen`` for a share
    ``open_rate`` of them (minutes to hours later, from the recipient's last address),
    ``epiCampaignClick`` for a share ``click_rate`` of the openers (seconds later, on the
    mailing's landing page with ``utm_medium=email``). Every one has the recipient's
    e-mail as ``DeviceId`` and ``User.Email``, and ``Payload`` ``{"epi": {"campaign":
    {"mailingId": <id>}}}`` (a 12-digit number). Opens and clicks that would fall after
    ``frame``'s last event are left out (not yet happened). Drawn from their own generator
    (``seed``); sorted by ``EventTime``; TrackIds are GUIDs.

    >>> from psanalytics.samples import generate
    >>> ev = campaign_events(generate(2_000, seed=3), seed=3)
    >>> sorted(ev["EventType"].unique())
    ['epiCampaignClick', 'epiCampaignMailingtouser', 'epiCampaignOpen']
    >>> bool((ev["DeviceId"] == ev["User"].struct.field("Email")).all())
    True
    """
    if mailings < 0:
        raise ArgumentError(f"mailings must be >= 0, got {mailings}")
    # Long because: a third of it is the docstring; the sends, opens and clicks are drawn
    # in one fixed order from the campaign generator.
    for name, share in (("reach", reach), ("open_rate", open_rate), ("click_rate", click_rate)):
        if not 0.0 <= share <= 1.0:
            raise ArgumentError(f"{name} must be between 0 and 1, got {share}")
    if frame.height == 0 or mailings == 0:
        return schema.empty_frame()
    rng = np.random.default_rng([seed, 0xCA3])  # its own stream: other events unchanged
    email = pl.col("User").struct.field("Email")
    users = (
        frame.filter(email != "").sort("EventTime", maintain_order=True)
        .group_by(email.alias("Email"))
        .agg(pl.col("User").struct.field("Name").last().alias("Name"),
             pl.col("RemoteAddress").last(), pl.col("CountryCode").last(), pl.col("City").last())
        .sort("Email")
    )
    if users.height == 0:
        return schema.empty_frame()
    times = frame.get_column("EventTime").dt.epoch("ns")
    t0, t1 = int(times.min()), int(times.max())  # type: ignore[arg-type]
    user_ix: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    mail_ix: list[np.ndarray] = []
    ids = rng.integers(100_000_000_000, 1_000_000_000_000, mailings)
    for m in range(mailings):
        send = t0 + (t1 - t0) * (m + 1) // (mailings + 1)
        to = np.flatnonzero(rng.random(users.height) < reach)
        sent = send + np.arange(len(to), dtype=np.int64) * _SEND_GAP_NS
        opened = rng.random(len(to)) < open_rate
        open_t = sent + (np.exp(rng.normal(np.log(7_200.0), 1.2, len(to))) * _NS).astype(np.int64)
        clicked = opened & (rng.random(len(to)) < click_rate)
        click_t = open_t + (np.exp(rng.normal(np.log(40.0), 0.8, len(to))) * _NS).astype(np.int64)
        for kind, mask, t in ((0, np.ones(len(to), dtype=bool), sent), (1, opened, open_t),
                              (2, clicked, click_t)):
            user_ix.append(to[mask])
            kinds.append(np.full(int(mask.sum()), kind, dtype=np.int64))
            stamps.append(t[mask])
            mail_ix.append(np.full(int(mask.sum()), m, dtype=np.int64))
    u = np.concatenate(user_ix)
    k = np.concatenate(kinds)
    t = np.concatenate(stamps)
    mi = np.concatenate(mail_ix)
    keep = t <= t1
    u, k, t, mi = u[keep], k[keep], t[keep], mi[keep]
    t = t - np.mod(t, _TICK)
    n = len(u)
    names = [_MAILINGS[i % len(_MAILINGS)] for i in range(mailings)]
    slugs = [x.lower().replace(" ", "-") for x in names]
    kind_types = pl.Series(["epiCampaignMailingtouser", "epiCampaignOpen", "epiCampaignClick"])
    verbs = ("Received mailing", "Opened mailing", "Clicked a link in mailing")
    value = pl.Series([f"{verbs[a]} {names[b]}" for a, b in zip(k.tolist(), mi.tolist(), strict=True)],
                      dtype=pl.String)
    landing = pl.Series(
        [f"{_HOST}/campaign/{sl}/?utm_source=newsletter&utm_medium=email&utm_campaign={sl}"
         for sl in slugs] + [""], dtype=pl.String)
    payload = pl.Series([f'{{"epi":{{"campaign":{{"mailingId":{int(i)}}}}}}}' for i in ids],
                        dtype=pl.String)
    uix = pl.Series(u)
    from_user = pl.Series(k > 0)  # opens and clicks come from the recipient's device

    def at_user(col: str) -> pl.Series:
        return pl.select(pl.when(pl.lit(from_user)).then(pl.lit(users.get_column(col).gather(uix)))
                         .otherwise(pl.lit(""))).to_series().alias(col)

    emails = users.get_column("Email").gather(uix)
    out = pl.DataFrame({
        "TrackId": _guids(rng, n),
        "DeviceId": emails,
        "EventType": kind_types.gather(pl.Series(k)),
        "Value": value,
        "Scope": pl.Series(["default"] * n, dtype=pl.String),
        "PageUri": landing.gather(pl.Series(np.where(k == 2, mi, mailings))),
        "PageTitle": pl.Series([""] * n, dtype=pl.String),
        "RemoteAddress": at_user("RemoteAddress"),
        "CountryCode": at_user("CountryCode"),
        "City": at_user("City"),
        "SessionId": pl.Series([""] * n, dtype=pl.String),
        "EventTime": pl.Series(t).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"),
        "User": pl.DataFrame({"Email": emails, "Name": users.get_column("Name").gather(uix),
                              "Info": pl.Series([None] * n, dtype=pl.String)}).to_struct("User"),
        "Payload": payload.gather(pl.Series(mi)),
        "Headers": pl.Series([None] * n, dtype=pl.String),
        "Extras": pl.Series([None] * n, dtype=pl.String),
    })
    return out.sort("EventTime", maintain_order=True)


def _with_campaigns(frame: pl.DataFrame, seed: int, mailings: int) -> pl.DataFrame:
    """``frame`` and its campaign events, sorted by ``EventTime`` (ties: ``frame`` first)."""
    extra = campaign_events(frame, seed=seed, mailings=mailings)
    return pl.concat([frame, extra]).sort("EventTime", maintain_order=True)


def real_shaped(frame: pl.DataFrame, *, seed: int = 0, empty_track_ids: float = 0.3,
                identical_pairs: int = 20, extra_share: float = 0.1,
                campaigns: int = 3) -> pl.DataFrame:
    """``frame`` as the real service holds such events (``shared/spec/apis.md`` section 5).

    ``campaigns`` e-mail mailings are added first (:func:`campaign_events`: the
    recipient's e-mail as DeviceId, ``Payload.epi.campaign.mailingId``). Then a share ``empty_track_ids`` of the events were tracked without a TrackId (``""``);
    ``identical_pairs`` events were tracked twice, identically (so they have no TrackId
    either: the service skips a repeated one); known users carry ``User.Info``
    (``{"Market": <country>}``); every event has ``Headers: {}``; a share ``extra_share``
    has a top-level field outside the documented ones (``"Channel": "web"``). Sorted by
    ``EventTime``; the same arguments give the same frame.

    >>> from psanalytics.samples import generate
    >>> shaped = real_shaped(generate(1_000, seed=1), seed=1)
    >>> int((shaped["TrackId"] == "").sum()) >= 300
    True
    """
    if frame.height and campaigns:
        frame = _with_campaigns(frame, seed, campaigns)
    rng = np.random.default_rng(seed)
    n = frame.height
    if n == 0:
        return frame
    empty = pl.Series(rng.random(n) < empty_track_ids)
    extra = pl.Series(rng.random(n) < extra_share)
    out = frame.with_columns(
        pl.when(empty).then(pl.lit("")).otherwise(pl.col("TrackId")).alias("TrackId"),
        pl.struct(
            pl.col("User").struct.field("Email"), pl.col("User").struct.field("Name"),
            pl.when(pl.col("User").struct.field("Email") != "")
            .then('{"Market":"' + pl.col("CountryCode") + '"}').alias("Info"),
        ).alias("User"),
        pl.lit("{}").alias("Headers"),
        pl.when(extra).then(pl.lit('{"Channel":"web"}')).alias("Extras"),
    )
    if identical_pairs:
        rows = pl.Series(rng.choice(n, size=min(identical_pairs, n), replace=False))
        twins = out[rows].with_columns(pl.lit("").alias("TrackId"))
        out = pl.concat([_with_rows(out, rows, twins), twins])
    return out.sort("EventTime", maintain_order=True)


def _with_rows(frame: pl.DataFrame, rows: pl.Series, new: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the rows at ``rows`` replaced by ``new`` (in that order)."""
    drop = np.zeros(frame.height, dtype=bool)
    drop[rows.to_numpy()] = True
    return pl.concat([frame.filter(pl.Series(~drop)), new])

