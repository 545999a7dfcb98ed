"""Replayer options grouped as limits=, pacing=, files=, mapping= (flat names still work)."""

from __future__ import annotations

import pytest

from psanalytics.replay import EventMap, Files, Limits, OdpMap, Pacing, Replayer


def test_groups_and_flat_names_configure_the_same_replayer(events, tmp_path):
    grouped = Replayer("event-api", account_id="1", mapping=EventMap(events={"order": "7001"}),
                       limits=Limits(max_visitors=1, workers=3), pacing=Pacing(rate=100.0),
                       files=Files(dry_run=tmp_path / "a.jsonl"), progress=False)
    flat = Replayer("event-api", account_id="1", event_map=EventMap(events={"order": "7001"}),
                    max_visitors=1, workers=3, rate=100.0, dry_run=tmp_path / "b.jsonl", progress=False)
    for r in (grouped, flat):
        assert (r.max_visitors, r.workers, r.pacer.rate) == (1, 3, 100.0)
        assert r.limits == Limits(max_visitors=1, workers=3) and r.pacing.rate == 100.0
    a, b = grouped.run(events), flat.run(events)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (a.batches, a.events) == (b.batches, b.events) == (2, 6)


def test_a_flat_name_wins_over_the_same_field_of_a_group_and_dicts_are_groups(tmp_path):
    r = Replayer("odp", limits={"max_visitors": 10, "workers": 2}, max_visitors=5,
                 files={"dry_run": tmp_path / "x.jsonl"}, mapping=OdpMap(unmapped="skip"))
    assert (r.limits.max_visitors, r.limits.workers, r.max_visitors) == (5, 2, 5)
    assert r.mapping == OdpMap(unmapped="skip") and r.event_map is None


def test_unknown_options_are_refused_by_name():
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['max_visiters'\]"):
        Replayer("event-api", account_id="1", dry_run="x.jsonl", max_visiters=3)
    with pytest.raises(TypeError, match="limits= must be a Limits"):
        Replayer("event-api", account_id="1", dry_run="x.jsonl", limits=3)
