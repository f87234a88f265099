"""A third-party plugin, written from the docs, changes what validate, lint, plan and templates
know: its channel, its facts, its lint rule, its template filter."""

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import courtship
from courtship.catalogue import FactSpec
from courtship.cli import app
from courtship.findings import Finding, Severity
from courtship.plugins import installed
from courtship.templates import environment

runner = CliRunner()


class HousePlugin:
    @courtship.hookimpl
    def register_channels(self, register):
        from courtship_outbox import OutboxChannel

        register("pigeon", OutboxChannel)

    @courtship.hookimpl
    def register_facts(self, register):
        register(FactSpec(name="loyalty_points", type="integer", description="From the CRM."))

    @courtship.hookimpl
    def register_lint_rules(self, register):
        def no_weekend(playbooks):
            for pb in playbooks:
                if {"sat", "sun"} & set(pb.trigger.get("schedule", {}).get("days", [])):
                    yield Finding(pb.path, 1, 1, Severity.WARNING, "no-weekend", "weekend send")

        register("no-weekend", no_weekend, description="no marketing at weekends")

    @courtship.hookimpl
    def register_template_filters(self, register):
        register("shout", lambda text: f"{text}!".upper())


@pytest.fixture
def house_plugin():
    installed.cache_clear()
    environment.cache_clear()
    registry = installed()
    registry.pm.register(HousePlugin(), name="house")
    try:
        yield registry
    finally:
        registry.pm.unregister(name="house")
        installed.cache_clear()
        environment.cache_clear()


def write(folder: Path, days: str = "[mon]") -> Path:
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "hi.md").write_text("{{ first_name | shout }}, {{ loyalty_points }}\n")
    (folder / "points.yaml").write_text(
        textwrap.dedent(
            f"""\
            id: points
            title: Points
            stage: loyal
            category: marketing
            trigger: {{schedule: {{every: 1w, days: {days}}}}}
            audience: {{fact: loyalty_points, gte: 1000}}
            respond:
              - send: {{channel: pigeon, template: hi}}
            """
        )
    )
    return folder


def test_plugin_channel_fact_and_filter_validate(tmp_path, house_plugin):
    result = runner.invoke(app, ["validate", str(write(tmp_path))])
    assert result.exit_code == 0, result.output


def test_without_the_plugin_they_are_unknown(tmp_path):
    installed.cache_clear()
    result = runner.invoke(app, ["validate", str(write(tmp_path))])
    assert result.exit_code == 1
    assert "unknown-channel 'pigeon' is not a channel" in result.output
    assert "unknown-fact 'loyalty_points' is not a known fact" in result.output
    assert "template-syntax body: No filter named 'shout'" in result.output


def test_plugin_lint_rule_runs_in_lint(tmp_path, house_plugin):
    result = runner.invoke(app, ["lint", str(write(tmp_path, "[sat]"))])
    assert "warning no-weekend weekend send" in result.output
    assert "stage-coverage" in result.output


def test_plugin_filter_renders(house_plugin):
    assert environment().from_string("{{ 'hi' | shout }}").render() == "HI!"
