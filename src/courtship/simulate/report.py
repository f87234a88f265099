"""A simulation as figures, a summary, a decisions file and one self-contained HTML page.

The page embeds plotly.js itself (``plotly.offline.get_plotlyjs``), so it opens offline with no
CDN; plotly is imported only here (the ``simulate`` extra).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from courtship.simulate.drawing import graph_svg
from courtship.simulate.timeline import DECISION_COLUMNS, Simulation, iter_decision_rows

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: The journey's stages, in order: the stage chart stacks them so.
JOURNEY = ("new", "onboarding", "active", "loyal", "advocate", "at-risk", "lapsed", "churned")


class ReportError(Exception):
    """The report cannot be written: what is missing, and how to get it."""


# ── figures of a simulation ───────────────────────────────────────────────
def customer_messages(simulation: Simulation) -> pl.DataFrame:
    """Messages delivered to customers (not team notifications), with their day and week."""
    frame = simulation.delivery_frame().filter(pl.col("channel") != "team")
    return frame.with_columns(
        pl.col("moment").dt.date().alias("day"),
        ((pl.col("moment") - pl.lit(simulation.start)).dt.total_seconds() // 604_800)
        .cast(pl.Int64)
        .alias("week"),
    )


def pressure(simulation: Simulation) -> pl.DataFrame:
    """Per customer and week of the simulation (7-day windows from ``--from``): messages, and
    marketing messages (what ``caps.per_customer_per_week`` counts)."""
    return (
        customer_messages(simulation)
        .group_by("customer", "week")
        .agg(
            pl.len().alias("messages"),
            (pl.col("category") == "marketing").sum().cast(pl.Int64).alias("marketing"),
        )
        .sort("week", "customer")
    )


def summary(simulation: Simulation) -> dict[str, Any]:
    """Totals by channel and playbook, what was held back or blocked and why, and the worst
    contact pressure."""
    delivered = simulation.delivery_frame()
    decisions = simulation.decision_frame()
    weekly = pressure(simulation)
    worst: dict[str, Any] = {"max": 0, "p95": 0.0, "customer": None, "week": None}
    if weekly.height:
        top = weekly.sort(["marketing", "messages", "customer"], descending=[True, True, False])
        worst = {
            "max": int(top["marketing"][0]),
            "max_all_messages": int(weekly["messages"].max()),  # type: ignore[arg-type]
            "p95": float(weekly["marketing"].quantile(0.95, "nearest") or 0),
            "customer": top["customer"][0],
            "week": int(top["week"][0]) + 1,
        }
    worst["budget"] = simulation.budget
    worst["over_budget"] = (
        int(weekly.filter(pl.col("marketing") > simulation.budget).height)
        if simulation.budget is not None and weekly.height
        else 0
    )

    def counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
        return {
            str(k): int(v) for k, v in sorted(Counter(frame.get_column(column).to_list()).items())
        }

    held = decisions.filter(pl.col("outcome").is_in(["deferred", "blocked"]))
    behaviour: Counter[str] = Counter()
    for _, did in simulation.behaviour:
        behaviour.update(did)
    return {
        "from": simulation.start.isoformat(),
        "to": simulation.end.isoformat(),
        "step": duration_text(simulation.step),
        "moments": simulation.moments,
        "customers": simulation.customers,
        "delivered": delivered.height,
        "by_channel": counts(delivered, "channel"),
        "by_playbook": counts(delivered, "playbook"),
        "deferred": counts(held.filter(pl.col("outcome") == "deferred"), "guard"),
        "blocked": counts(held.filter(pl.col("outcome") == "blocked"), "guard"),
        "decisions": decisions.height,
        "pressure": worst,
        "behaviour": dict(sorted(behaviour.items())),
    }


def duration_text(step: dt.timedelta) -> str:
    """A step as it is written on the command line: 1d, 6h, 30m."""
    seconds = int(step.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(step)


def render_text(facts: dict[str, Any]) -> str:
    def block(title: str, items: dict[str, int]) -> list[str]:
        lines = [f"  {title}: {sum(items.values())}"]
        lines += [f"    {name:<34} {count:>8}" for name, count in items.items()]
        return lines

    worst = facts["pressure"]
    budget = worst["budget"]
    lines = [
        f"Simulated {facts['moments']} moment(s) from {facts['from']} to {facts['to']} "
        f"(step {facts['step']}), {facts['customers']} customer(s); nothing was sent",
        *block("messages by channel", facts["by_channel"]),
        *block("messages by playbook", facts["by_playbook"]),
        *block("deferred, by reason", facts["deferred"]),
        *block("blocked, by reason", facts["blocked"]),
        f"  worst contact pressure: {worst['max']} marketing message(s) in a week"
        + (f" (customer {worst['customer']}, week {worst['week']})" if worst["customer"] else "")
        + f"; p95 {worst['p95']:g}; budget "
        + (
            f"{budget} a week, {worst['over_budget']} customer-week(s) over it"
            if budget
            else "none"
        ),
    ]
    if facts["behaviour"]:
        lines.append(
            "  behaviour model: "
            + ", ".join(f"{name} {count}" for name, count in facts["behaviour"].items())
        )
    return "\n".join(lines)


def write_decisions(simulation: Simulation, path: Path) -> None:
    """Every decision of every moment, as CSV (``.csv``) or JSON (``.json``)."""
    from courtship.cli.plan import _cell

    if path.suffix.lower() == ".json":
        with path.open("w", encoding="utf-8") as out:
            json.dump(list(iter_decision_rows(simulation)), out, ensure_ascii=False)
            out.write("\n")
        return
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=DECISION_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in iter_decision_rows(simulation):
            writer.writerow({k: _cell(v) for k, v in row.items()})


# ── the HTML page ─────────────────────────────────────────────────────────
def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ReportError(
            "the simulation report needs plotly: pip install 'courtship[simulate]'"
        ) from None
    return go


def figures(simulation: Simulation) -> list[tuple[str, str, go.Figure]]:
    """(title, what it shows, figure) for each chart of the report."""
    go = _plotly()
    messages = customer_messages(simulation)
    out: list[tuple[str, str, Any]] = []
    days = _days(simulation)

    def by_day(column: str) -> Any:
        fig = go.Figure()
        counts = messages.group_by("day", column).len().sort("day")
        for name in sorted(set(counts[column].to_list())):
            part = dict(counts.filter(pl.col(column) == name).select("day", "len").iter_rows())
            fig.add_bar(name=name, x=days, y=[part.get(day, 0) for day in days])
        fig.update_layout(barmode="stack", xaxis_title="day", yaxis_title="messages")
        return fig

    out.append(
        (
            "Messages per day, by channel",
            "Every message the engine would have delivered to a customer, on the day it went "
            "out (team notifications are not counted).",
            by_day("channel"),
        )
    )
    out.append(
        (
            "Messages per day, by playbook",
            "The same messages, by the playbook that sent them.",
            by_day("playbook"),
        )
    )
    weekly = pressure(simulation)
    budget = simulation.budget
    fig = go.Figure()
    top = max([*weekly["messages"].to_list(), budget or 0, 1])
    for label, column in (("all messages", "messages"), ("marketing messages", "marketing")):
        spread = Counter(weekly[column].to_list())
        fig.add_bar(
            name=label, x=list(range(top + 1)), y=[spread.get(n, 0) for n in range(top + 1)]
        )
    if budget is not None:
        fig.add_vline(
            x=budget + 0.5,
            line_dash="dash",
            line_color="red",
            annotation_text=f"budget: {budget} a week",
        )
    fig.update_layout(
        barmode="group",
        xaxis={"title": "messages to one customer in one week", "dtick": 1},
        yaxis_title="customer-weeks",
    )
    out.append(
        (
            "Contact pressure: messages per customer per week",
            "For each customer reached and each week of the simulation (7 days from the start), "
            "how many messages they got; the cap `caps.per_customer_per_week` counts marketing "
            "messages only (dashed line).",
            fig,
        )
    )
    fig = go.Figure()
    if weekly.height:
        stats = (
            weekly.group_by("week")
            .agg(
                pl.col("marketing").max().alias("max"),
                pl.col("marketing").quantile(0.95, "nearest").alias("p95"),
                pl.col("messages").max().alias("max_all"),
            )
            .sort("week")
        )
        weeks = [f"week {w + 1}" for w in stats["week"].to_list()]
        fig.add_scatter(
            name="max, marketing", x=weeks, y=stats["max"].to_list(), mode="lines+markers"
        )
        fig.add_scatter(
            name="p95, marketing", x=weeks, y=stats["p95"].to_list(), mode="lines+markers"
        )
        fig.add_scatter(
            name="max, all messages", x=weeks, y=stats["max_all"].to_list(), mode="lines+markers"
        )
    if budget is not None:
        fig.add_hline(y=budget, line_dash="dash", line_color="red", annotation_text="budget")
    fig.update_layout(yaxis_title="messages per customer")
    out.append(
        (
            "Contact pressure, week by week",
            "The most messages one customer got in each week, and the 95th percentile, against "
            "the budget.",
            fig,
        )
    )
    decisions = simulation.decision_frame().filter(pl.col("outcome").is_in(["deferred", "blocked"]))
    fig = go.Figure()
    counts = decisions.group_by("outcome", "guard").len().sort("len")
    for outcome in ("deferred", "blocked"):
        part = counts.filter(pl.col("outcome") == outcome)
        fig.add_bar(
            name=outcome,
            orientation="h",
            y=[g or "(none)" for g in part["guard"].to_list()],
            x=part["len"].to_list(),
        )
    fig.update_layout(barmode="stack", xaxis_title="decisions", yaxis_title="reason")
    out.append(
        (
            "Deferred and blocked, by reason",
            "Messages held back for a later moment (deferred) or that never go out (blocked), by "
            "the guard that decided (`courtship explain` says the same for one customer).",
            fig,
        )
    )
    fig = go.Figure()
    stamps = [moment for moment, _ in simulation.stages]
    seen = {name for _, counts in simulation.stages for name in counts}
    names = [s for s in JOURNEY if s in seen] + sorted(seen - set(JOURNEY))
    for name in names:
        fig.add_scatter(
            name=name,
            x=stamps,
            y=[counts.get(name, 0) for _, counts in simulation.stages],
            stackgroup="stages",
            mode="lines",
        )
    fig.update_layout(yaxis_title="customers")
    out.append(
        (
            "Customers by journey stage over time",
            "The stage column of the customers at each moment. It moves only with `--behaviour` "
            "(orders, referrals and drift); without it, it is the customer file's.",
            fig,
        )
    )
    tags = sorted({name for _, counts in simulation.tags for name in counts})
    if tags:
        fig = go.Figure()
        for name in tags:
            fig.add_scatter(
                name=name,
                x=stamps,
                y=[counts.get(name, 0) for _, counts in simulation.tags],
                mode="lines",
            )
        fig.update_layout(yaxis_title="customers")
        out.append(
            (
                "Customers tagged by playbooks over time",
                "Customers carrying each tag that `tag` steps set (and `untag` steps removed).",
                fig,
            )
        )
    for fig in (f for _, _, f in out):
        fig.update_layout(
            template="plotly_white",
            height=420,
            margin={"l": 60, "r": 20, "t": 30, "b": 50},
            showlegend=True,
        )
    return out


def _days(simulation: Simulation) -> list[dt.date]:
    first, last = simulation.start.date(), simulation.end.date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def render_html(simulation: Simulation, facts: dict[str, Any]) -> str:
    """The whole report: one HTML page with plotly.js embedded, opening offline."""
    _plotly()
    import plotly.io as pio
    import plotly.offline

    sections = []
    for number, (title, text, fig) in enumerate(figures(simulation), 1):
        chart = pio.to_html(
            fig,
            include_plotlyjs=False,
            full_html=False,
            div_id=f"chart-{number}",
            config={"displaylogo": False, "responsive": True},
        )
        sections.append(
            f"<section><h2>{html.escape(title)}</h2><p>{_md(text)}</p>{chart}</section>"
        )
    if facts.get("experiments"):
        sections.append(experiments_section(facts["experiments"]))
    sections.append(
        "<section><h2>The dependency graph</h2><p>Playbooks in evaluation order, left to right: "
        "an arrow runs from a playbook to one that depends on it (<code>depends_on</code>, "
        "black) or reads a fact it sets (blue); dashed grey arrows are suppressions.</p>"
        f"<div class='graph'>{graph_svg(simulation.graph)}</div></section>"
    )
    worst = facts["pressure"]
    rows = [
        ("Period", f"{facts['from']} → {facts['to']}, every {facts['step']}"),
        ("Moments", f"{facts['moments']}"),
        ("Customers", f"{facts['customers']:,}"),
        ("Messages delivered (simulated)", f"{facts['delivered']:,}"),
        ("Decisions", f"{facts['decisions']:,}"),
        (
            "Worst contact pressure",
            f"{worst['max']} marketing message(s) in a week; p95 {worst['p95']:g}; budget "
            + (f"{worst['budget']} a week" if worst["budget"] is not None else "none"),
        ),
    ]
    if facts["behaviour"]:
        rows.append(
            (
                "Behaviour model",
                ", ".join(f"{name} {count:,}" for name, count in facts["behaviour"].items()),
            )
        )
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return PAGE.format(
        plotlyjs=plotly.offline.get_plotlyjs(),
        table=table,
        sections="\n".join(sections),
    )


def experiments_section(reports: list[dict[str, Any]]) -> str:
    """What ``courtship results`` says of the simulated weeks: per experiment, each arm's
    customers reached and converted, its rate, and its lift against the baseline (holdout or
    control group) with the 95 % interval, as a table and as a chart of the intervals."""
    import plotly.graph_objects as go
    import plotly.io as pio

    parts = [
        "<section id='experiments'><h2>Experiments</h2><p>What <code>courtship results</code> "
        "would say of the simulated weeks: per arm, the customers reached (sent a message, or "
        "held out) and those who converted (the goal's event within its window), and the lift "
        "against the holdout (or the project's control group) in percentage points, with its "
        f"95&nbsp;% interval ({html.escape(reports[0]['interval'])}).</p>"
    ]
    for number, report in enumerate(reports, 1):
        goal = report["goal"]
        said = f"goal: {goal['event']} within {goal['within']}" if goal else "no goal: reach only"
        baseline = report["baseline"]
        head = "<tr><th>arm</th><th>reached</th><th>converted</th><th>rate</th>"
        head += f"<th>lift vs {html.escape(baseline)} (95% interval)</th>" if baseline else ""
        rows = []
        for arm in report["arms"]:
            cells = [
                html.escape(arm["arm"]),
                f"{arm['reached']:,}",
                "" if arm["converted"] is None else f"{arm['converted']:,}",
                "" if arm["rate"] is None else f"{arm['rate']:.1%}",
            ]
            if baseline:
                cells.append(
                    ""
                    if arm["lift"] is None
                    else f"{arm['lift'] * 100:+.1f} points "
                    f"[{arm['low'] * 100:+.1f}, {arm['high'] * 100:+.1f}]"
                )
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(
            f"<h3>{html.escape(report['playbook'])} ({html.escape(said)})</h3>"
            f"<table class='experiment' data-playbook='{html.escape(report['playbook'])}'>"
            f"{head}</tr>{''.join(rows)}</table>"
        )
        measured = [arm for arm in report["arms"] if arm["lift"] is not None]
        if measured:
            fig = go.Figure(
                go.Scatter(
                    x=[arm["lift"] * 100 for arm in measured],
                    y=[arm["arm"] for arm in measured],
                    mode="markers",
                    marker={"size": 10},
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": [(arm["high"] - arm["lift"]) * 100 for arm in measured],
                        "arrayminus": [(arm["lift"] - arm["low"]) * 100 for arm in measured],
                    },
                    hovertemplate="%{y}: %{x:+.1f} points<extra></extra>",
                )
            )
            fig.add_vline(x=0, line_dash="dash", line_color="#888")
            fig.update_layout(
                height=140 + 40 * len(measured),
                margin={"l": 90, "r": 20, "t": 30, "b": 40},
                xaxis_title=f"lift vs {baseline}, percentage points (95% interval)",
                template="plotly_white",
            )
            parts.append(
                pio.to_html(
                    fig,
                    include_plotlyjs=False,
                    full_html=False,
                    div_id=f"experiment-{number}",
                    config={"displaylogo": False, "responsive": True},
                )
            )
    parts.append("</section>")
    return "".join(parts)


def write_report(simulation: Simulation, facts: dict[str, Any], path: Path) -> None:
    text = render_html(simulation, facts)
    path.write_text(text, encoding="utf-8")


def _md(text: str) -> str:
    """Backticks as <code>, everything else escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Courtship simulation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6rem; }} h2 {{ font-size: 1.2rem; margin-top: 2.5rem; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .3rem .8rem; }}
th {{ color: #555; font-weight: 600; }} tr:nth-child(odd) {{ background: #f6f6f6; }}
code {{ background: #f0f0f0; padding: 0 .2rem; }} .graph {{ overflow-x: auto; }}
</style>
<script type="text/javascript">{plotlyjs}</script>
</head>
<body>
<h1>Courtship simulation</h1>
<p>The real engine, moment by moment, on a copy of the state store: nothing was sent, and the
state store was not changed.</p>
<table>{table}</table>
{sections}
</body>
</html>
"""
