"""``courtship lint``: the bundled library is clean, ignore comments silence what they name and
nothing else, over-messaging follows a playbook's frequency, conflicts name both playbooks, and
the reasoning over conditions decides what it can and admits what it cannot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import courtship
from courtship.cli import app
from courtship.findings import LINT_RULES, Severity
from courtship.lint import all_rules
from courtship.lint.frequency import schedule_per_week
from courtship.lint.solver import DNF_BOUND, Verdict, satisfiable
from courtship.plugins import installed

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled project: courtship.yaml and playbooks/, as the working folder."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "playbooks"


def lint(*args: str) -> tuple[int, list[dict]]:
    result = runner.invoke(app, ["lint", "--format", "json", *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)["findings"]


def rules(findings: list[dict]) -> list[str]:
    return sorted(f["rule"] for f in findings)


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"{file.name} no longer says {old!r}"
    file.write_text(text.replace(old, new, 1))


def test_the_bundled_library_lints_clean(library: Path) -> None:
    result = runner.invoke(app, ["lint", "--strict"])
    assert result.exit_code == 0, result.output
    assert "all clean" in result.output


def test_the_registry_is_the_documented_rule_list() -> None:
    assert set(all_rules()) == set(LINT_RULES) - {"unknown-ignore"}
    assert all(isinstance(rule.severity, Severity) for rule in all_rules().values())


# ── over-messaging ───────────────────────────────────────────────────────────


def test_a_weekly_letter_made_daily_is_over_messaging(library: Path) -> None:
    digest = library / "weekly-digest.yaml"
    edit(digest, "schedule: {every: 1w, days: [thu]}", "schedule: {every: 1d}")
    edit(digest, "once_every: 6d", "once_every: 1d")
    _, findings = lint()
    [finding] = findings
    assert finding["rule"] == "over-messaging"
    assert finding["path"] == "playbooks/weekly-digest.yaml"
    assert (
        "7 messages in a week, over 3 (caps.per_customer_per_week in courtship.yaml)"
        in (finding["message"])
    )
    assert (
        "the schedule fires 7 time(s) a week (playbooks/weekly-digest.yaml:" in (finding["message"])
    )


def test_once_every_still_bounds_a_daily_letter(library: Path) -> None:
    edit(
        library / "weekly-digest.yaml",
        "schedule: {every: 1w, days: [thu]}",
        "schedule: {every: 1d}",
    )
    assert lint() == (0, [])  # once_every: 6d: at most twice in any week, under 3


def test_the_budget_is_the_projects_weekly_cap(library: Path) -> None:
    digest = library / "weekly-digest.yaml"
    edit(digest, "schedule: {every: 1w, days: [thu]}", "schedule: {every: 1d}")
    edit(digest, "once_every: 6d", "once_every: 1d")
    edit(library.parent / "courtship.yaml", "per_customer_per_week: 3", "per_customer_per_week: 7")
    assert lint() == (0, [])


def test_without_a_cap_the_default_budget_is_three(library: Path) -> None:
    (library.parent / "courtship.yaml").unlink()
    digest = library / "weekly-digest.yaml"
    edit(
        digest,
        "schedule: {every: 1w, days: [thu]}",
        "schedule: {every: 1w, days: [mon, tue, wed, thu]}",
    )
    edit(digest, "once_every: 6d", "once_every: 1d")
    _, [finding] = lint()
    assert "4 messages in a week, over 3 (the default budget" in finding["message"]


def test_an_event_without_limits_is_unbounded_and_max_sends_bounds_it(library: Path) -> None:
    thanks = library / "call-them-by-name.yaml"
    edit(thanks, "  once_every: 30d\n", "")
    _, [finding] = lint()
    assert "can send one customer no limit messages" in finding["message"]
    assert "event: order can happen any number of times" in finding["message"]
    edit(thanks, "  reentry: always\n", "  reentry: always\n  max_sends: 3\n")
    assert lint() == (0, [])


def test_waits_spread_a_sequence_over_weeks(library: Path) -> None:
    """The Thursday letter with two follow-ups: a week apart they stay under the budget, a
    day apart all three come in one week (and last week's may still be running)."""
    digest = library / "weekly-digest.yaml"
    send = "  - send: {channel: email, template: weekly-digest}\n"
    edit(
        digest,
        send,
        send
        + "  - wait: 7d\n"
        + send.replace("send:", "id: again\n    send:")
        + "  - wait: 7d\n"
        + send.replace("send:", "id: last\n    send:"),
    )
    assert lint() == (0, [])
    edit(digest, "  - wait: 7d\n", "  - wait: 1d\n")
    edit(digest, "  - wait: 7d\n", "  - wait: 1d\n")
    _, [finding] = lint()
    assert "6 messages in a week" in finding["message"]
    assert "3 message(s) per entry, 3 within a week" in finding["message"]


@pytest.mark.parametrize(
    ("schedule", "times"),
    [
        ({"every": "1w", "days": ["thu"]}, 1),
        ({"every": "1w"}, 1),  # Monday
        ({"every": "2w", "days": ["mon", "thu"]}, 2),
        ({"every": "1d"}, 7),
        ({"every": "1d", "days": ["sat", "sun"]}, 2),
        ({"every": "3d"}, 3),
        ({"every": "6h", "days": ["mon"]}, 4),
    ],
)
def test_a_schedule_fires_as_the_calendar_says(schedule: dict, times: int) -> None:
    assert schedule_per_week({"schedule": schedule}) == times


# ── ignore comments ──────────────────────────────────────────────────────────


def make_unbounded(library: Path) -> Path:
    thanks = library / "call-them-by-name.yaml"
    edit(thanks, "  once_every: 30d\n", "")
    return thanks


def test_an_ignore_on_the_line_above_silences_only_its_rule(library: Path) -> None:
    thanks = make_unbounded(library)
    edit(thanks, "trigger:\n", "# courtship: ignore[generic-greeting]\ntrigger:\n")
    assert rules(lint()[1]) == ["over-messaging"]
    edit(thanks, "ignore[generic-greeting]", "ignore[generic-greeting, over-messaging]")
    assert lint() == (0, [])


def test_an_ignore_on_the_line_itself(library: Path) -> None:
    thanks = make_unbounded(library)
    edit(thanks, "trigger:\n", "trigger: # courtship: ignore[over-messaging]\n")
    assert lint() == (0, [])


def test_an_ignore_two_lines_above_does_not_reach(library: Path) -> None:
    thanks = make_unbounded(library)
    edit(thanks, "priority: 41", "# courtship: ignore[over-messaging]\npriority: 41")
    assert rules(lint()[1]) == ["over-messaging"]


def test_an_ignore_file_comment_silences_the_whole_file(library: Path) -> None:
    thanks = make_unbounded(library)
    thanks.write_text("# courtship: ignore-file[over-messaging]\n" + thanks.read_text())
    assert lint() == (0, [])


def test_a_library_rule_is_ignored_from_any_playbook(library: Path) -> None:
    edit(library / "birthday-gift.yaml", "priority: 80\n", "priority: 80\nenabled: false\n")
    assert rules(lint()[1]) == ["no-birthday-playbook"]
    welcome = library / "welcome.yaml"
    welcome.write_text(
        "# courtship: ignore-file[no-birthday-playbook] (we never ask for a birthday)\n"
        + welcome.read_text()
    )
    assert lint() == (0, [])


def test_the_old_stage_uncovered_id_still_ignores_stage_coverage(library: Path) -> None:
    edit(library / "lapsed-check-in.yaml", "stage: lapsed", "stage: at-risk")
    assert rules(lint()[1]) == ["stage-coverage"]
    welcome = library / "welcome.yaml"
    welcome.write_text("# courtship: ignore-file[stage-uncovered]\n" + welcome.read_text())
    assert lint() == (0, [])


def test_a_jinja_comment_ignores_in_a_template(library: Path) -> None:
    template = library / "templates" / "thank-you.direct.md"
    edit(template, "subject: ", "subject: Dear valued customer - ")
    _, [finding] = lint()
    assert (finding["rule"], finding["path"], finding["line"]) == (
        "generic-greeting",
        "playbooks/templates/thank-you.direct.md",
        2,
    )
    assert finding["col"] == len("subject: ") + 1
    assert "sent by playbooks/call-them-by-name.yaml:" in finding["message"]
    # after the front matter, anywhere in the body: a Jinja comment prints nothing
    template.write_text(template.read_text() + "{# courtship: ignore-file[generic-greeting] #}\n")
    assert lint() == (0, [])


def test_a_jinja_comment_on_the_line_above(library: Path) -> None:
    template = library / "templates" / "thank-you.direct.md"
    text = template.read_text()
    head, _, body = text.partition("---\n")[2].partition("---\n")
    template.write_text(
        f"---\n{head}---\n{{# courtship: ignore[generic-greeting] #}}\nHi there. {body}"
    )
    assert lint() == (0, [])


def test_an_ignore_naming_no_rule_is_a_warning(library: Path) -> None:
    thanks = make_unbounded(library)
    edit(thanks, "trigger:\n", "# courtship: ignore[over-mesaging]\ntrigger:\n")
    _, findings = lint()
    assert rules(findings) == ["over-messaging", "unknown-ignore"]
    [unknown] = [f for f in findings if f["rule"] == "unknown-ignore"]
    assert unknown["message"] == "the ignore comment names no rule: 'over-mesaging'"
    assert "over-messaging" in unknown["hint"]
    assert (unknown["line"], unknown["col"]) == (13, 21)


def test_a_validation_error_cannot_be_ignored(library: Path) -> None:
    thanks = library / "call-them-by-name.yaml"
    edit(
        thanks,
        "trigger:\n  event: order",
        "# courtship: ignore[unknown-template]\ntrigger:\n  event: order",
    )
    edit(thanks, "template: thank-you", "template: thank-yuo")
    code, findings = lint()
    assert code == 1 and rules(findings) == ["unknown-template"]


class WeekendRule:
    @courtship.hookimpl
    def register_lint_rules(self, register):  # type: ignore[no-untyped-def]
        def no_weekend(playbooks):  # type: ignore[no-untyped-def]
            for pb in playbooks:
                if "schedule" in pb.trigger:
                    yield pb.document.finding(
                        ("trigger",), "no-weekend", "a letter", severity=Severity.WARNING
                    )

        register("no-weekend", no_weekend, description="no letters")


@pytest.fixture
def weekend_plugin():  # type: ignore[no-untyped-def]
    installed.cache_clear()
    registry = installed()
    registry.pm.register(WeekendRule(), name="weekend")
    try:
        yield registry
    finally:
        registry.pm.unregister(name="weekend")
        installed.cache_clear()


def test_a_plugin_rule_runs_and_is_ignored_the_same_way(library: Path, weekend_plugin) -> None:  # type: ignore[no-untyped-def]
    _, findings = lint()
    assert rules(findings) == ["no-weekend"]
    digest = library / "weekly-digest.yaml"
    digest.write_text("# courtship: ignore-file[no-weekend]\n" + digest.read_text())
    assert lint() == (0, [])


# ── conflicts, impossible conditions, unreachable steps ─────────────────────


def test_a_conflict_names_both_playbooks_with_file_and_line(library: Path) -> None:
    edit(library / "call-them-by-name.yaml", "priority: 41", "priority: 40")
    _, [finding] = lint()
    assert finding["rule"] == "playbook-conflict"
    assert finding["path"] == "playbooks/call-them-by-name.yaml"
    assert finding["line"] == 12
    assert (
        "'call-them-by-name' (playbooks/call-them-by-name.yaml:12) and 'get-to-know-you' "
        "(playbooks/get-to-know-you.yaml:13) can fire" in finding["message"]
    )


def test_suppression_settles_a_conflict(library: Path) -> None:
    edit(library / "call-them-by-name.yaml", "priority: 41", "priority: 40")
    edit(library / "get-to-know-you.yaml", "limits:", "suppresses: [call-them-by-name]\nlimits:")
    assert lint() == (0, [])


def test_disjoint_audiences_do_not_conflict(library: Path) -> None:
    """The first-order nudge (orders_count = 0) and a thank-you (orders_count >= 2)."""
    edit(library / "call-them-by-name.yaml", "priority: 41", "priority: 50")
    assert lint() == (0, [])


def test_a_condition_that_contradicts_the_trigger_is_never_true(library: Path) -> None:
    edit(
        library / "birthday-gift.yaml",
        "  fact: orders_count\n  gte: 1",
        "  fact: birthday\n  exists: false",
    )
    _, [finding] = lint()
    assert finding["rule"] == "never-true" and finding["severity"] == "error"
    assert "can never be true when its trigger (playbooks/birthday-gift.yaml:" in finding["message"]


def test_the_innermost_impossible_part_is_named(library: Path) -> None:
    edit(
        library / "advocate-invite.yaml",
        "    - {fact: referrals_count, eq: 0}",
        "    - all: [{fact: referrals_count, eq: 0}, {fact: referrals_count, gte: 1}]",
    )
    _, [finding] = lint()
    assert finding["rule"] == "never-true"
    assert finding["json_path"] == "$.audience.all[0]"


def test_steps_after_a_message_to_a_friend_without_an_event(library: Path) -> None:
    edit(
        library / "welcome-their-friends.yaml",
        "  event: referral\n  where: {field: friend_id, exists: true}",
        "  becomes: {fact: referrals_count, gte: 1}",
    )
    _, findings = lint()
    assert {f["rule"] for f in findings} == {"unreachable-step", "no-referral-playbook"}
    assert [f["json_path"] for f in findings if f["rule"] == "unreachable-step"] == [
        "$.respond[1].send.to",
        "$.respond[2]",
        "$.respond[3]",
        "$.respond[4]",
    ]


# ── the reasoning itself ─────────────────────────────────────────────────────


def fact(name: str, **test: object) -> dict:
    return {"fact": name, **test}


@pytest.mark.parametrize(
    ("conditions", "verdict"),
    [
        ([{"all": [fact("x", gt=5), fact("x", lt=3)]}], Verdict.UNSAT),
        ([fact("x", gte=5), fact("x", lte=5)], Verdict.SAT),
        ([fact("x", gt=5), fact("x", lte=5)], Verdict.UNSAT),
        ([fact("x", between=[1, 3]), fact("x", eq=4)], Verdict.UNSAT),
        ([fact("x", ne=5), fact("x", eq=5)], Verdict.UNSAT),
        ([{"not": fact("x", gt=5)}, fact("x", gt=6)], Verdict.UNSAT),
        ([{"not": fact("x", gt=5)}], Verdict.SAT),  # a customer without x
        ([{"not": fact("x", gt=5)}, fact("x", exists=True)], Verdict.SAT),
        ([fact("stage", **{"in": ["active", "loyal"]}), fact("stage", eq="lapsed")], Verdict.UNSAT),
        ([fact("stage", **{"in": ["active", "loyal"]}), fact("stage", ne="active")], Verdict.SAT),
        ([fact("stage", not_in=["active"]), fact("stage", eq="active")], Verdict.UNSAT),
        ([fact("vip", eq=True), fact("vip", eq=False)], Verdict.UNSAT),
        ([{"tag": "vip"}, {"not": {"tag": "vip"}}], Verdict.UNSAT),
        ([fact("d", exists=False), fact("d", within="14d")], Verdict.UNSAT),
        ([fact("d", within="14d"), {"not": fact("d", within="30d")}], Verdict.UNSAT),
        ([fact("d", gt="2026-01-01"), fact("d", lt="2025-12-31")], Verdict.UNSAT),
        ([{"any": [fact("x", lt=1), fact("x", gt=9)]}, fact("x", between=[2, 8])], Verdict.UNSAT),
        ([{"any": [fact("x", lt=1), fact("x", gt=9)]}, fact("x", between=[2, 9.5])], Verdict.SAT),
        # another fact as the bound: no constant to reason with, so no conclusion
        ([fact("x", gt={"fact": "y", "times": 2}), fact("x", lt=3)], Verdict.UNKNOWN),
        ([fact("x", gt={"fact": "y", "times": 2}), fact("z", lt=3)], Verdict.SAT),
    ],
)
def test_satisfiability(conditions: list[dict], verdict: Verdict) -> None:
    assert satisfiable(*conditions) is verdict


def test_beyond_the_size_bound_it_says_it_could_not_decide() -> None:
    pairs = [{"any": [fact(f"a{i}", gt=1), fact(f"b{i}", gt=1)]} for i in range(12)]
    assert DNF_BOUND < 2**12
    assert satisfiable({"all": pairs}) is Verdict.UNKNOWN


def test_a_playbook_that_never_messages_the_customer_competes_with_nobody(library: Path) -> None:
    """The same priority as the first-order nudge, but it only tags: no conflict."""
    (library / "tag-new.yaml").write_text(
        "id: tag-new\ntitle: Tag the new\nstage: new\ncategory: marketing\npriority: 50\n"
        "trigger:\n  becomes: {fact: days_since_signup, gt: 7}\nrespond:\n  - tag: newcomer\n"
    )
    assert lint() == (0, [])
    edit(
        library / "tag-new.yaml",
        "  - tag: newcomer\n",
        "  - send: {channel: email, template: welcome}\n",
    )
    # (an email-only marketing send also draws template-unsubscribe-missing from validate)
    (finding,) = [f for f in lint()[1] if f["rule"] == "playbook-conflict"]
    assert "'onboarding-first-order-nudge'" in finding["message"]
    assert "'tag-new'" in finding["message"]


class TakenId:
    @courtship.hookimpl
    def register_lint_rules(self, register):  # type: ignore[no-untyped-def]
        register("over-messaging", lambda playbooks: [], description="mine")


def test_a_plugin_rule_cannot_take_a_built_in_id(library: Path) -> None:
    installed.cache_clear()
    registry = installed()
    registry.pm.register(TakenId(), name="taken")
    try:
        result = runner.invoke(app, ["lint"])
    finally:
        registry.pm.unregister(name="taken")
        installed.cache_clear()
    assert result.exit_code == 2
    assert "'over-messaging' (plugin taken)" in result.stderr
    assert "Traceback" not in result.output


def test_an_event_filter_nobody_can_pass_is_never_true(library: Path) -> None:
    edit(
        library / "call-them-by-name.yaml",
        "where: {field: amount, gte: 50}",
        "where: {all: [{field: amount, gte: 50}, {not: {field: amount, gt: 10}}]}",
    )
    _, [finding] = lint()
    assert finding["rule"] == "never-true"
    assert finding["json_path"] == "$.trigger.where"
