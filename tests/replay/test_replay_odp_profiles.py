"""Profile Store profiles moved to ODP as customer updates: the exact objects (from the
vendor's own example profile), read from the Profiles API and sent with
``replay(..., to="odp", profiles=...)``, the CLI's ``--profiles-file``, and a profile ODP
cannot take reported, never dropped."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from psanalytics import connect
from psanalytics.cli import app
from psanalytics.emulator import serve
from psanalytics.exports import write_events
from psanalytics.replay import Replayer, ReplayError, encode_odp_customers, replay
from psanalytics.samples import generate

KEY = "odp-key-1234abcd"
#: The vendor's example profile (Profile Store API, "Profile methods": GET
#: api/v1.0/profiles/{scope}/{id}), kept as the vendor printed it in tests/vendor/.
VENDOR = json.loads((Path(__file__).parents[1] / "vendor" / "profile-store-profile.json").read_text())
TWO_DEVICES = dict(VENDOR, ProfileId="p-2", DeviceIds=["dev-b", "dev-a"], Name="Solo", Info={},
                   Payload={"tier": {"level": 2}, "tags": ["x"]}, SegmentIds="s1")
NO_IDENTIFIER = dict(VENDOR, ProfileId="p-3", DeviceIds=[], Info={"Country": "NO"})


def test_vendor_profile_becomes_this_exact_customer_update():
    rows = encode_odp_customers([VENDOR])
    assert rows.columns == ["json", "nbytes", "email", "vuid", "ms", "profile_id"]
    assert rows.get_column("json").to_list() == [
        '{"attributes":{"email":"Nikki.Blomqvist@example.com","vuid":"9f4447e4-9f00-4fa8-ad30-a1a971d4fbf6",'
        '"first_name":"Nikki","last_name":"A Blomqvist","ps_name":"Nikki A Blomqvist",'
        '"ps_profile_id":"6243d1c0-70dd-453e-9cc4-63c577cb25ad","ps_scope":"DefaultScope","ps_visits":1150,'
        '"ps_first_seen":1512131696,"ps_last_seen":1526729592,"ps_update_time":1551907778,'
        '"ps_contact_information":"Mailable,Anonymous","ps_info_website":"https://example.com",'
        '"ps_info_picture":"http://example.com/Nikki A Blomqvist_avatar.png","ps_info_country":"SW",'
        '"ps_payload_custom_field":14,"ps_payload_other_custom_field":"apple"}}']
    assert rows.row(0)[2:] == ("Nikki.Blomqvist@example.com", "9f4447e4-9f00-4fa8-ad30-a1a971d4fbf6",
                               1526729592000, "6243d1c0-70dd-453e-9cc4-63c577cb25ad")


def test_one_update_per_device_and_a_profile_without_identifiers_is_handed_back():
    bad: list[tuple[str, str]] = []
    rows = encode_odp_customers([TWO_DEVICES, NO_IDENTIFIER], invalid_out=bad)
    objs = [orjson.loads(t)["attributes"] for t in rows.get_column("json")]
    assert [(o.get("email"), o["vuid"]) for o in objs] == [(None, "dev-a"), (None, "dev-b")]
    assert objs[0]["ps_payload_tier_level"] == 2 and "ps_payload_tags" not in objs[0]
    assert objs[0]["ps_extra_segment_ids"] == "s1"
    assert [pid for pid, _ in bad] == ["p-3"]
    assert orjson.loads(bad[0][1])["Info"] == {"Country": "NO"}


def test_profiles_read_from_the_store_are_moved_as_customers(tmp_path):
    ev = generate(400, n_devices=12, days=1, seed=5)
    with serve(ev, profiles=[VENDOR, TWO_DEVICES, NO_IDENTIFIER], odp_api_key=KEY) as srv:
        store = connect(srv.url, api_key=srv.api_key, quiet=True, progress=False)
        profiles = store.profiles()
        assert profiles.get_column("ProfileId").to_list() == ["6243d1c0-70dd-453e-9cc4-63c577cb25ad",
                                                              "p-2", "p-3"]
        rep = replay(ev, srv.url, to="odp", api_key=KEY, profiles=profiles, progress=False,
                     rejected=tmp_path / "rej.jsonl")
        customers = srv.emulator.odp.customers()
        st = srv.emulator.odp.state(limit=0)
    assert (rep.profiles, rep.profile_batches) == (3, 1)
    assert st["profiles_updated"] == 3 and st["accepted"] == 400
    nikki = customers["Nikki.Blomqvist@example.com"]
    assert nikki["vuids"] == ["9f4447e4-9f00-4fa8-ad30-a1a971d4fbf6"]
    assert (nikki["first_name"], nikki["ps_visits"]) == ("Nikki", 1150)
    # the profile with neither an address nor a device is reported with the reason
    assert (rep.invalid, rep.ok) == (1, False)
    (line,) = (tmp_path / "rej.jsonl").read_bytes().splitlines()
    rec = orjson.loads(line)
    assert rec["reason"] == "profile 'p-3' has no Info.Email and no DeviceIds: ODP needs an identifier"
    assert rec["visitor"]["ProfileId"] == "p-3"


def test_profiles_go_with_odp_only(tmp_path):
    with pytest.raises(ReplayError, match="profiles= moves customers to ODP: it goes with to='odp', not 'event-api'"):
        Replayer(None, account_id="1", dry_run=tmp_path / "b.jsonl", profiles=[VENDOR])


def test_cli_profiles_file_dry_run_writes_the_customer_bodies(tmp_path):
    ev = generate(50, n_devices=3, days=1, seed=2)
    src, prof, out = tmp_path / "ev.ndjson", tmp_path / "p.ndjson", tmp_path / "bodies.jsonl"
    write_events(ev, src)
    prof.write_bytes(b"\n".join(orjson.dumps(p) for p in (VENDOR, TWO_DEVICES)) + b"\n")
    res = CliRunner().invoke(app, ["replay", str(src), "--to", "odp", "--profiles-file", str(prof),
                                   "--dry-run", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "customer profiles 3 in 1 requests" in res.output
    bodies = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert bodies[-1] == [orjson.loads(t) for t in encode_odp_customers(prof).get_column("json")]
    assert sum(len(b) for b in bodies[:-1]) == 50
    both = CliRunner().invoke(app, ["replay", str(src), "--to", "odp", "--profiles", "--profiles-file",
                                    str(prof), "--dry-run", str(out)])
    assert both.exit_code == 2 and "not both" in both.output
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(orjson.dumps(dict(VENDOR, Visits="many")) + b"\n")
    res = CliRunner().invoke(app, ["replay", str(src), "--to", "odp", "--profiles-file", str(bad),
                                   "--dry-run", str(tmp_path / "b2.jsonl"), "--no-progress"])
    assert res.exit_code == 1 and 'bad.ndjson:1: Visits must be an integer, got "many"' in res.output
