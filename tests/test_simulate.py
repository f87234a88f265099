"""`courtship simulate`: the real engine moment by moment on a copy of the state store, the
behaviour model, the decisions file, and the HTML report in a real headless browser."""

import csv
import datetime as dt
import json
import shutil
import socket
import struct
import sys
import zlib
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.simulate import Behaviour
from courtship.simulate.behaviour import CustomerModel
from courtship.sources import CustomerBase, read_customers_csv, read_events_jsonl
from tests.conftest import HEADER, customer

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
NOW = "2026-11-23T15:00:00Z"
START = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)

WIN_BACK = """\
id: win-back
title: Win back
stage: churned
category: marketing
trigger: {event: goodbye}
respond:
  - send: {channel: preferred, template: hello}
  - wait: 7d
    unless: {event: order}
  - send: {channel: preferred, template: hello, offer: {percent_off: 30}}
"""
WELCOME = """\
id: welcome
title: Welcome
stage: new
category: transactional
trigger: {event: signup}
respond:
  - send: {channel: preferred, template: hello}
  - tag: welcomed
"""
DIGEST = """\
id: digest
title: A daily digest, to show caps at work
stage: active
category: marketing
trigger:
  schedule: {every: 1d}
  at: "10:00"
respond:
  - send: {channel: preferred, template: hello}
"""


def make_project(root: Path, channels: str = "", digest: bool = False) -> Path:
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "win-back.yaml").write_text(WIN_BACK)
    (root / "playbooks" / "welcome.yaml").write_text(WELCOME)
    if digest:
        (root / "playbooks" / "digest.yaml").write_text(DIGEST)
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Hello {{ first_name }}\n---\nHi {{ first_name }}!\n"
    )
    people = [customer(f"c00{i}", preferred="email", cadence=3) for i in range(1, 5)]
    (root / "customers.csv").write_text("\n".join([HEADER, *people]) + "\n")
    events = [
        {"customer_id": "c001", "type": "signup", "at": "2026-11-23T14:00:00Z"},
        {"customer_id": "c002", "type": "signup", "at": "2026-11-23T14:00:00Z"},
        {"customer_id": "c004", "type": "goodbye", "at": "2026-11-23T14:00:00Z"},
        {"customer_id": "c003", "type": "order", "at": "2026-10-01T12:00:00Z", "amount": 30},
    ]
    (root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state/state.sqlite\nbrand: {name: Lotus, url: https://lotus.example.org}\n"
        "caps: {per_customer_per_week: 2}\n" + channels
    )
    return root


def simulate(root: Path, *args: str, start: str = "2026-11-23T16:00:00Z", days: int = 9):
    end = (dt.datetime.fromisoformat(start) + dt.timedelta(days=days)).isoformat()
    report = root / "report.html"
    result = runner.invoke(
        app,
        [
            *("simulate", "--from", start, "--to", end, "--project", str(root), "-q"),
            *("--report", str(report), *args),
        ],
    )
    return result


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_simulation_continues_the_real_state_and_leaves_it_byte_identical(tmp_path):
    root = make_project(tmp_path)
    ran = runner.invoke(app, ["run", "--at", NOW, "--project", str(root), "-q", "-f", "json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["delivered"] == {"email": 3}  # two welcomes, one win-back
    before = snapshot(root / "state")
    outbox = snapshot(root / ".courtship")
    assert "state.sqlite" in before and "state.sqlite.id" in before

    result = simulate(root, "-f", "json", "--decisions", str(tmp_path / "decisions.json"))
    assert result.exit_code == 0, result.output
    assert snapshot(root / "state") == before  # the real store, byte for byte
    assert snapshot(root / ".courtship") == outbox  # no channel wrote anything
    decisions = json.loads((tmp_path / "decisions.json").read_text())
    sent = [(d["moment"], d["customer"], d["playbook"], d["step"]) for d in decisions]
    # the sequence the real run started goes on: its wait expires at 7 days, then step 2
    assert sent == [("2026-11-30T16:00:00+00:00", "c004", "win-back", 2)]
    assert decisions[0]["outcome"] == "sent" and decisions[0]["channel"] == "email"
    summary = json.loads(result.stdout)
    assert summary["moments"] == 10 and summary["by_playbook"] == {"win-back": 1}


def test_a_simulation_never_builds_a_channel_nor_creates_the_real_store(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channels = (
        f"channels:\n  email: {{host: 127.0.0.1, port: {port}, security: none,\n"
        "          from: hello@lotus.example.org, timeout: 1}\n"
        "unsubscribe: {base_url: https://hooks.lotus.example.org/unsubscribe,\n"
        "              secret_env: T_SIM_UNSUBSCRIBE}\n"
    )
    monkeypatch.setenv("T_SIM_UNSUBSCRIBE", "a-secret-for-signing-links-0123456789")
    root = make_project(tmp_path, channels)
    result = simulate(root, "-f", "json", start=NOW, days=1)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["by_channel"] == {"email": 3}
    assert not (root / "state").exists()  # no store existed: none is created
    # the same project's real run cannot deliver: the port is closed indeed
    ran = runner.invoke(app, ["run", "--at", NOW, "--project", str(root), "-q", "-f", "json"])
    assert json.loads(ran.stdout)["retrying"] == {"email": 3}, ran.output


def test_caps_and_cadence_carry_over_from_moment_to_moment(tmp_path):
    root = make_project(tmp_path, digest=True)
    decisions = tmp_path / "decisions.csv"
    result = simulate(
        root, "-f", "json", "--decisions", str(decisions), start="2026-11-24T10:00:00Z", days=13
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(decisions.open()))
    digest = [r for r in rows if r["playbook"] == "digest"]
    sent = sorted({r["moment"][:10] for r in digest if r["outcome"] == "sent"})
    # cadence 3 days from each message; the weekly cap of 2 (7-day windows) holds the third
    assert sent == ["2026-11-24", "2026-11-27", "2026-12-01", "2026-12-04"]
    held = {(r["moment"][:10], r["guard"]) for r in digest if r["outcome"] == "deferred"}
    assert ("2026-11-25", "cadence") in held and ("2026-11-30", "cap") in held
    assert {guard for _, guard in held} == {"cadence", "cap"}
    summary = json.loads(result.stdout)
    assert summary["pressure"]["max"] == summary["pressure"]["budget"] == 2
    assert summary["pressure"]["over_budget"] == 0
    assert summary["by_playbook"]["digest"] == 16  # 4 customers, 4 times each


def test_the_decisions_file_holds_every_decision_of_every_moment(tmp_path):
    root = make_project(tmp_path)
    result = simulate(root, "--decisions", str(tmp_path / "all.csv"), start=NOW, days=2)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert list(rows[0]) == [
        *("moment", "customer", "recipient", "playbook", "step", "step_id", "category"),
        *("channel", "outcome", "guard", "reason"),
    ]
    assert sorted((r["customer"], r["playbook"], r["outcome"]) for r in rows) == [
        ("c001", "welcome", "sent"),
        ("c002", "welcome", "sent"),
        ("c004", "win-back", "sent"),
    ]
    assert "Simulated 3 moment(s)" in result.stdout and "nothing was sent" in result.stdout


def test_a_moment_before_the_last_real_run_is_refused(tmp_path):
    root = make_project(tmp_path)
    runner.invoke(app, ["run", "--at", NOW, "--project", str(root), "-q"])
    result = simulate(root, start="2026-11-23T14:00:00Z", days=1)
    assert result.exit_code == 2
    assert "already run 2026-11-23T15:00:00+00:00, later than --from" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "soon"], "--step 'soon' is not a duration; write it like 1d"),
        (["--step", "0d"], "is not a step forward"),
        (["--decisions", "out.txt"], "write a .csv or a .json file"),
        (["--report", "/no/such/folder/r.html"], "no such folder"),
        (["--format", "yaml"], "unknown format 'yaml'"),
        (["--step", "1m"], "more than 20000; give a longer --step"),
    ],
)
def test_bad_options_are_usage_errors_with_a_hint(tmp_path, args, message):
    root = make_project(tmp_path)
    result = simulate(root, *args, days=30)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_report_that_cannot_be_written_is_an_error_naming_it(tmp_path):
    root = make_project(tmp_path)
    (tmp_path / "taken").mkdir()
    result = simulate(root, "--report", str(tmp_path / "taken"), days=1)
    assert result.exit_code == 2
    assert f"{tmp_path / 'taken'}: cannot write it" in result.output


def test_to_before_from_is_refused(tmp_path):
    root = make_project(tmp_path)
    result = simulate(root, days=-1)
    assert result.exit_code == 2 and "is before --from" in result.output


def test_a_lost_state_store_is_refused_as_a_run_refuses_it(tmp_path):
    root = make_project(tmp_path)
    runner.invoke(app, ["run", "--at", NOW, "--project", str(root), "-q"])
    (root / "state" / "state.sqlite").unlink()
    result = simulate(root)
    assert result.exit_code == 1 and "the state store is gone, but it existed" in result.output


def test_without_plotly_the_command_says_what_to_install(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    result = simulate(root, days=1)
    assert result.exit_code == 2
    assert "needs plotly: pip install 'courtship[simulate]'" in result.output


# ── the behaviour model ───────────────────────────────────────────────────
def small_base(tmp_path: Path, stages: list[str], events: list[dict]) -> CustomerBase:
    rows = [customer(f"c00{i}", stage=s) for i, s in enumerate(stages, 1)]
    (tmp_path / "c.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return CustomerBase(
        read_customers_csv(tmp_path / "c.csv"), read_events_jsonl(tmp_path / "e.jsonl")
    )


def reached(*customers: str) -> list[tuple[str, str, str, str]]:
    return [(c, "win-back", "sms", "marketing") for c in customers] + [
        ("c003", "escalate", "team", "transactional")  # a team note reaches no customer
    ]


def test_customers_reached_answer_buy_and_refer_within_the_next_step(tmp_path):
    order = {"customer_id": "c001", "type": "order", "at": "2026-09-01T10:00:00Z", "amount": 20}
    base = small_base(tmp_path, ["lapsed", "active", "new"], [order])
    model = CustomerModel(Behaviour(answer=1, buy=1, refer=1, seed=3), base)
    day = dt.timedelta(days=1)
    after, did = model.advance(base, START, day, reached("c001", "c002"))
    assert did == {"answered": 2, "bought": 2, "referred": 2}
    fresh = after.events.filter(pl.col("at") > START).sort("customer_id", "type")
    assert fresh.select("customer_id", "type", "channel").rows() == [
        ("c001", "inbound_message", "sms"),
        ("c001", "order", "web"),
        ("c001", "referral", None),
        ("c002", "inbound_message", "sms"),
        ("c002", "order", "web"),
        ("c002", "referral", None),
    ]
    assert fresh["at"].max() <= START + day
    assert set(fresh["amount"].drop_nulls()) == {20.0}  # the base's median order
    friends = fresh.filter(pl.col("type") == "referral").select("customer_id", "friend_id").rows()
    assert all(friend != referrer for referrer, friend in friends)
    # an order makes a lapsed customer active, and then the referral an advocate
    assert after.customers["stage"].to_list() == ["advocate", "advocate", "new"]
    buying = CustomerModel(Behaviour(answer=0, buy=1, refer=0), base)
    after, _ = buying.advance(base, START, day, reached("c001", "c002", "c003"))
    assert after.customers["stage"].to_list() == ["active", "active", "active"]
    assert base.customers["stage"].to_list() == ["lapsed", "active", "new"]  # a new base


def test_the_model_is_seeded_and_rates_of_zero_do_nothing(tmp_path):
    base = small_base(tmp_path, ["active"] * 3, [])
    runs = []
    for _ in range(2):
        model = CustomerModel(Behaviour(answer=0.5, buy=0.5, refer=0.5, seed=11), base)
        after, did = model.advance(base, START, dt.timedelta(days=1), reached("c001", "c002"))
        runs.append((after.events.rows(), did))
    assert runs[0] == runs[1]
    still = CustomerModel(Behaviour(answer=0, buy=0, refer=0), base)
    same, did = still.advance(base, START, dt.timedelta(days=1), reached("c001", "c002"))
    assert same is base and not did


def test_customers_who_stop_ordering_drift_down_the_stages(tmp_path):
    last_order = (START - dt.timedelta(days=44, hours=12)).isoformat()
    events = [{"customer_id": c, "type": "order", "at": last_order} for c in ("c001", "c002")]
    base = small_base(tmp_path, ["loyal", "lapsed", "active"], events)
    model = CustomerModel(Behaviour(answer=0, buy=0, refer=0), base)
    day = dt.timedelta(days=1)
    base, _ = model.advance(base, START, day, [])
    assert base.customers["stage"].to_list() == ["loyal", "lapsed", "active"]
    base, _ = model.advance(base, START + day, day, [])
    # 45 days without an order: loyal → at-risk; lapsed never goes up; no order, no drift
    assert base.customers["stage"].to_list() == ["at-risk", "lapsed", "active"]


def test_rates_are_probabilities():
    with pytest.raises(ValueError, match=r"buy=1\.5: a probability is between 0 and 1"):
        Behaviour(buy=1.5)


def test_behaviour_on_the_command_line_moves_the_base(tmp_path):
    root = make_project(tmp_path)
    result = simulate(root, "-f", "json", "--behaviour", "--answer", "1", start=NOW, days=2)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["behaviour"] == {"answered": 3}


# ── the report in a real browser ──────────────────────────────────────────
def png_colours(data: bytes) -> int:
    """Distinct colours of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, _height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    previous, colours = bytearray(stride), set()
    for row in range(len(raw) // (stride + 1)):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1 :][:stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 255
        if row % 8 == 0:  # a sample of the rows is plenty
            colours.update(bytes(line[i : i + 3]) for i in range(0, stride, channels * 4))
        previous = line
    return len(colours)


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian's `chromium`; .ci/run installs it)"
)
def test_the_report_opens_offline_in_a_real_browser_and_draws_its_charts(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra)")
    root = make_project(tmp_path, digest=True)
    result = simulate(root, "--behaviour", start="2026-11-24T10:00:00Z", days=14)
    assert result.exit_code == 0, result.output
    report = root / "report.html"
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_function(
                "[...document.querySelectorAll('.plotly-graph-div')]"
                ".every(chart => chart.querySelector('.main-svg'))"
            )
            external = page.evaluate("[...document.scripts].filter(s => s.src).length")
            charts = page.locator(".plotly-graph-div").count()
            bars = page.locator(".plotly-graph-div .bars path").count()
            graph = page.locator("svg[aria-label='dependency graph'] rect").count()
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == [report.as_uri()] and external == 0  # plotly.js inside: offline
    assert charts == 7 and bars > 10 and graph == 3
    (tmp_path / "report.png").write_bytes(shot)
    assert png_colours(shot) > 30  # charts in colour, not a blank page


def test_docs_page_is_linked_and_names_every_chart():
    page = (ROOT / "docs" / "simulate.md").read_text()
    assert "(simulate.md)" in (ROOT / "docs" / "index.md").read_text()
    assert "docs/simulate.md" in (ROOT / "README.md").read_text()
    for title in ("Messages per day", "Contact pressure", "Deferred and blocked", "journey stage"):
        assert title in page
    image = page.split("](images/", 1)[1].split(")", 1)[0]
    assert (ROOT / "docs" / "images" / image).is_file()


# ── the same engine as a real run, on the bundled examples ────────────────
def bundled(folder: Path) -> Path:
    folder.mkdir()
    (folder / "courtship.yaml").write_text(
        (ROOT / "courtship.yaml")
        .read_text()
        .replace("playbooks: playbooks", f"playbooks: {ROOT / 'playbooks'}")
        .replace("examples/", f"{ROOT / 'examples'}/")
    )
    return folder


def planned(folder: Path, at: str) -> list[tuple]:
    result = runner.invoke(app, ["plan", "--at", at, "--project", str(folder), "-f", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    outcome = {"send": "sent", "deferred": "deferred", "blocked": "blocked"}
    return sorted(
        (d["recipient"], d["playbook"], d["step"], outcome[d["status"]], d["guard"])
        for d in plan["sends"] + plan["deferred"] + plan["blocked"]
    )


def test_each_simulated_moment_decides_what_real_runs_would(tmp_path):
    real = bundled(tmp_path / "real")
    ran = runner.invoke(app, ["run", "--at", NOW, "--project", str(real), "-q"])
    assert ran.exit_code == 0, ran.output
    assert any((real / ".courtship" / "streaks").iterdir())  # `becomes` playbooks keep streaks
    twin = tmp_path / "twin"
    shutil.copytree(real, twin)
    before = snapshot(real / ".courtship")

    decisions = tmp_path / "decisions.json"
    result = simulate(real, "--decisions", str(decisions), start="2026-11-24T15:00:00Z", days=1)
    assert result.exit_code == 0, result.output
    assert snapshot(real / ".courtship") == before
    simulated: dict[str, list[tuple]] = {}
    for d in json.loads(decisions.read_text()):
        if d["channel"] != "team":
            row = (d["recipient"], d["playbook"], d["step"], d["outcome"], d["guard"])
            simulated.setdefault(d["moment"][:10], []).append(row)

    # the twin runs for real, moment after moment: the same decisions, moment after moment
    for day in ("2026-11-24", "2026-11-25"):
        at = f"{day}T15:00:00Z"
        assert sorted(simulated[day]) == planned(twin, at)
        assert runner.invoke(app, ["run", "--at", at, "--project", str(twin), "-q"]).exit_code == 0
    assert len(simulated["2026-11-24"]) >= 10 and len(simulated["2026-11-25"]) >= 10
