"""`courtship results` and experiments over simulated weeks: a playbook with two variants and a
holdout, run with the behaviour model that plants an effect per template, reports lifts whose
95 % intervals cover the planted effects; and the interval itself, checked against its
published worked examples."""

import datetime as dt
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship import experiments
from courtship.cli import app
from tests.conftest import HEADER, customer

runner = CliRunner()

AB = """\
id: welcome-test
title: Welcome test
stage: new
category: marketing
holdout: 20%
goal: {event: order, within: 7d}
trigger: {event: signup}
respond:
  - send:
      channel: email
      template: hello
      variants:
        - {id: plain, weight: 1}
        - {id: bold, weight: 1, template: bold}
"""


def make_project(root: Path, customers: int) -> Path:
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome-test.yaml").write_text(AB)
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Hello {{ first_name }}\n---\nHi {{ first_name }}!\n"
    )
    (root / "playbooks" / "templates" / "bold.md").write_text(
        "---\nsubject: BIG NEWS {{ first_name }}\n---\nHi {{ first_name }}, it is here!\n"
    )
    people = [customer(f"c{i:04d}", preferred="email", cadence=0) for i in range(customers)]
    (root / "customers.csv").write_text("\n".join([HEADER, *people]) + "\n")
    draw = random.Random(7)
    start = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    events = [
        {
            "customer_id": f"c{i:04d}",
            "type": "signup",
            "at": (start + dt.timedelta(days=draw.randrange(7))).isoformat(),
        }
        for i in range(customers)
    ]
    (root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state/state.sqlite\nbrand: {name: Lotus, url: https://lotus.example.org}\n"
    )
    return root


def test_simulated_weeks_report_lifts_whose_intervals_cover_the_planted_effects(tmp_path):
    """Customers reached order with 5 % chance (the model's `buy`), 15 % after the bold
    variant (`--uplift bold=0.10`); held-out customers hear nothing, so the model makes them
    order never: the planted lifts are 5 and 15 points."""
    root = make_project(tmp_path, 1500)
    result = runner.invoke(
        app,
        [
            *("simulate", "--from", "2026-11-23T16:00:00Z", "--to", "2026-12-07T16:00:00Z"),
            *("--project", str(root), "-q", "--report", str(root / "r.html"), "-f", "json"),
            *("--behaviour", "--answer", "0", "--refer", "0", "--buy", "0.05"),
            *("--uplift", "bold=0.10", "--seed", "3"),
        ],
    )
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["experiments"]
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert report["baseline"] == "holdout" and set(arms) == {"plain", "bold", "holdout"}
    assert sum(a["reached"] for a in arms.values()) == 1500  # every customer, once
    assert 0.15 < arms["holdout"]["reached"] / 1500 < 0.25
    assert arms["holdout"]["converted"] == 0
    for arm, planted in (("plain", 0.05), ("bold", 0.15)):
        assert arms[arm]["low"] <= planted <= arms[arm]["high"], arms[arm]
        assert arms[arm]["low"] > 0  # and it is told apart from no effect
    assert arms["bold"]["low"] > arms["plain"]["lift"]


def test_without_the_uplift_the_variants_convert_alike(tmp_path):
    root = make_project(tmp_path, 600)
    result = runner.invoke(
        app,
        [
            *("simulate", "--from", "2026-11-23T16:00:00Z", "--to", "2026-12-07T16:00:00Z"),
            *("--project", str(root), "-q", "--report", str(root / "r.html")),
            *("--behaviour", "--buy", "0.05"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "welcome-test  (goal: order within 7d)" in result.stdout
    assert "lift vs holdout (95% interval, points)" in result.stdout


@pytest.mark.parametrize("text", ["bold", "bold=x", "=0.1", "bold=2"])
def test_a_bad_uplift_is_a_usage_error_with_its_form(tmp_path, text):
    root = make_project(tmp_path, 3)
    result = runner.invoke(
        app,
        [
            *("simulate", "--from", "2026-11-23T16:00:00Z", "--to", "2026-11-24T16:00:00Z"),
            *("--project", str(root), "-q", "--behaviour", "--uplift", text),
        ],
    )
    assert result.exit_code == 2
    assert "write TEMPLATE=P" in result.output


# ── courtship results, from the record of real runs ───────────────────────


def test_results_read_the_record_and_the_events(tmp_path):
    from courtship.cli.common import load
    from courtship.engine import Engine
    from courtship.state import StateStore

    root = make_project(tmp_path, 200)
    with (root / "courtship.yaml").open("a") as project:
        project.write("lookback: 8d\n")  # every signup of the week
    loaded = load(root, quiet=True)
    state = StateStore(root / "state" / "state.sqlite")
    moment = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)
    engine: Engine = loaded.engine
    plan = engine.plan(loaded.base, moment, state)
    engine.record(plan, state)
    state.close()
    arms = {d.customer_id: d.arm for d in plan.decisions}
    bold = sorted(c for c, arm in arms.items() if arm == "bold")
    held = sorted(c for c, arm in arms.items() if arm == "holdout")
    with (root / "events.jsonl").open("a") as events:
        for cid in bold[:10]:  # ten bold customers order within the week…
            events.write(
                json.dumps(
                    {
                        "customer_id": cid,
                        "type": "order",
                        "at": "2026-12-02T10:00:00Z",
                        "amount": 20,
                    }
                )
                + "\n"
            )
        for cid in bold[10:15]:  # …five after it: no conversion
            events.write(
                json.dumps(
                    {
                        "customer_id": cid,
                        "type": "order",
                        "at": "2026-12-08T10:00:00Z",
                        "amount": 20,
                    }
                )
                + "\n"
            )
        events.write(
            json.dumps(
                {
                    "customer_id": held[0],
                    "type": "order",
                    "at": "2026-12-01T10:00:00Z",
                    "amount": 20,
                }
            )
            + "\n"
        )
    result = runner.invoke(app, ["results", "welcome-test", "-p", str(root), "-f", "json"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["results"]
    got = {a["arm"]: (a["reached"], a["converted"]) for a in report["arms"]}
    assert got == {
        "bold": (len(bold), 10),
        "plain": (len(arms) - len(bold) - len(held), 0),
        "holdout": (len(held), 1),
    }
    row = next(a for a in report["arms"] if a["arm"] == "bold")
    lift, low, high = experiments.lift_interval(10, len(bold), 1, len(held))
    assert (row["lift"], row["low"], row["high"]) == (lift, low, high)
    text = runner.invoke(app, ["results", "-p", str(root)]).stdout
    assert f"  {'bold':<16} {len(bold):>8} {10:>10} {10 / len(bold):>7.1%}  +" in text
    assert "interval: 95% Newcombe hybrid score" in text


def test_results_of_an_unknown_playbook_say_which_exist(tmp_path):
    root = make_project(tmp_path, 3)
    result = runner.invoke(app, ["results", "welcome-tset", "-p", str(root)])
    assert result.exit_code == 2
    assert "no playbook 'welcome-tset'" in result.output and "welcome-test" in result.output


def test_results_before_any_run_say_so(tmp_path):
    root = make_project(tmp_path, 3)
    result = runner.invoke(app, ["results", "-p", str(root)])
    assert result.exit_code == 0
    assert "no experiment has reached anyone yet" in result.stdout


# ── the interval ──────────────────────────────────────────────────────────
@pytest.mark.parametrize(
    ("counts", "expected"),
    [  # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ],
)
def test_the_interval_is_newcombes_hybrid_score(counts, expected):
    _, low, high = experiments.lift_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_assignment_follows_the_weights():
    variants = [{"id": "a", "weight": 3}, {"id": "b", "weight": 1}]
    picks = [experiments.variant_of("p", "send:x", f"c{i}", variants)["id"] for i in range(4000)]
    assert 0.72 < picks.count("a") / 4000 < 0.78


def test_results_of_a_playbook_nobody_reached_yet_say_so(tmp_path):
    root = make_project(tmp_path, 3)
    result = runner.invoke(app, ["results", "welcome-test", "-p", str(root)])
    assert result.exit_code == 0
    assert "nobody reached yet" in result.stdout


def test_preview_shows_every_variant_of_a_message(tmp_path):
    root = make_project(tmp_path, 3)
    (root / "playbooks" / "welcome-test.yaml").write_text(
        AB.replace("template: bold}", "template: bold, tone: direct}")
    )
    for tone in ("buddy", "salesy", "direct"):
        (root / "playbooks" / "templates" / f"bold.{tone}.md").write_text(
            f"{tone} {{{{ first_name }}}}\n"
        )
    (root / "playbooks" / "templates" / "bold.md").unlink()
    result = runner.invoke(app, ["preview", "welcome-test", "-p", str(root), "-f", "json"])
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    assert [(s["variant"], s["template"]) for s in steps] == [("plain", "hello"), ("bold", "bold")]
    assert [v["text"].strip() for v in steps[1]["versions"]] == ["direct Maya"]  # its tone only


def simulated_report(tmp_path: Path, customers: int = 400) -> tuple[Path, dict]:
    root = make_project(tmp_path, customers)
    result = runner.invoke(
        app,
        [
            *("simulate", "--from", "2026-11-23T16:00:00Z", "--to", "2026-12-07T16:00:00Z"),
            *("--project", str(root), "-q", "--report", str(root / "r.html"), "-f", "json"),
            *("--behaviour", "--answer", "0", "--refer", "0", "--buy", "0.05"),
            *("--uplift", "bold=0.10", "--seed", "3"),
        ],
    )
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["experiments"]
    return root / "r.html", report


def test_the_simulation_report_shows_each_arm_with_its_lift_and_interval(tmp_path):
    from html.parser import HTMLParser

    page, report = simulated_report(tmp_path)

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.inside = False

        def handle_starttag(self, tag, attrs):
            if tag == "table" and ("class", "experiment") in attrs:
                self.inside = True
            elif tag == "tr" and self.inside:
                self.rows.append([])

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False

        def handle_data(self, data):
            if self.inside and self.rows:
                self.rows[-1].append(data)

    tables = Tables()
    tables.feed(page.read_text())
    header, *rows = tables.rows
    assert header == ["arm", "reached", "converted", "rate", "lift vs holdout (95% interval)"]
    expected = []
    for arm in report["arms"]:
        lift = (
            ""
            if arm["lift"] is None
            else f"{arm['lift'] * 100:+.1f} points "
            f"[{arm['low'] * 100:+.1f}, {arm['high'] * 100:+.1f}]"
        )
        expected.append(
            [arm["arm"], f"{arm['reached']:,}", f"{arm['converted']:,}", f"{arm['rate']:.1%}"]
            + ([lift] if lift else [])
        )
    assert rows == expected
    assert {row[0] for row in rows} == {"plain", "bold", "holdout"}
    assert "welcome-test (goal: order within 7d)" in page.read_text()


CHROMIUM = __import__("shutil").which("chromium")


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian's `chromium`; .ci/run installs it)"
)
def test_the_experiments_of_the_report_render_in_a_real_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra)")
    page_file, report = simulated_report(tmp_path)
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            page.wait_for_function("document.querySelector('#experiment-1 .main-svg')")
            arms = page.locator("table.experiment tr td:first-child").all_inner_texts()
            points = page.locator("#experiment-1 .scatterlayer .point").count()
            bars = page.locator("#experiment-1 .errorbar").count()
            visible = page.locator("#experiments h2").is_visible()
        finally:
            browser.close()
    assert errors == []
    assert visible
    assert arms == [arm["arm"] for arm in report["arms"]]
    measured = sum(arm["lift"] is not None for arm in report["arms"])
    assert points == measured == 2 and bars == measured
