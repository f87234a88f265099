"""``courtship preview PLAYBOOK``: every message of a playbook as one customer would read it, in
every tone and language — and, with ``--send-to seeds``, in the team's own inboxes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from courtship.cli.common import close_channels, fail, parse_moment
from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.project import Project

#: Where a seed's address for each channel is.
SEED_ADDRESS = {"email": "email", "sms": "phone", "instagram": "instagram_id"}


def command(
    playbook: Annotated[str, typer.Argument(help="The playbook id.")],
    customer: Annotated[
        str | None,
        typer.Option(
            "--customer", "-c", help="Whose facts fill the templates (default: a sample)."
        ),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="The moment, ISO 8601 with a zone (default: now).")
    ] = None,
    send_to: Annotated[
        str | None,
        typer.Option("--send-to", help="`seeds`: deliver each version to the project's seed list."),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """Render each message of PLAYBOOK for one customer in every tone and language (records
    nothing); --send-to seeds delivers them to the seed list, marked as tests."""
    from courtship.cli.common import known_customer, load, open_state
    from courtship.engine.render import preview
    from courtship.schema import did_you_mean

    if output_format not in ("text", "json"):
        raise fail(f"unknown format '{output_format}'; choose text or json", ExitCode.USAGE)
    if send_to not in (None, "seeds"):
        raise fail(f"--send-to takes `seeds`, not '{send_to}'", ExitCode.USAGE)
    moment = parse_moment(at) if at else dt.datetime.now(dt.UTC)
    loaded = load(project, quiet=True)
    pb = loaded.engine.playbooks.get(playbook)
    if pb is None:
        hint = did_you_mean(playbook, sorted(loaded.engine.playbooks))
        raise fail(
            f"no playbook '{playbook}' (or it has errors: see `courtship validate`)"
            + (f"; {hint}" if hint else ""),
            ExitCode.USAGE,
        )
    if customer is None:
        customer = _sample(loaded.base)
    known_customer(loaded.base, customer)
    state = open_state(loaded.project, dry_run=True)
    try:
        person = loaded.engine.plan(loaded.base, moment, state, trace=customer).customer_facts
    finally:
        state.close()
    steps = [
        {
            "step": index,
            "step_id": pb.step_ids[index],
            "template": variant.get("template", step["send"]["template"]),
            "versions": preview(pb, index, person or {}, loaded.project, moment, variant),
        }
        | ({"variant": variant["id"]} if variant else {})
        for index, step in enumerate(pb.flow)
        if isinstance(step.get("send"), dict)
        for variant in step["send"].get("variants") or [{}]  # each variant of an A/B test
    ]
    if not steps:
        raise fail(f"{playbook} sends no message: nothing to preview", ExitCode.USAGE)
    sent = _send_to_seeds(loaded.project, pb, steps, moment) if send_to else []
    if output_format == "json":
        payload = {"playbook": playbook, "customer": customer, "at": moment.isoformat()}
        typer.echo(
            json.dumps(payload | {"steps": steps, "test_sends": sent}, indent=2, default=str)
        )
    else:
        typer.echo(_text(playbook, customer, steps, sent), nl=False)
    if any(s["status"] != "delivered" for s in sent) or any(
        "error" in v for s in steps for v in s["versions"]
    ):
        raise typer.Exit(ExitCode.FINDINGS)


def _sample(base: Any) -> str:
    """The first customer in the file with a first name (a template calls them by it)."""
    import polars as pl

    named = base.customers.filter(pl.col("first_name").is_not_null() & (pl.col("first_name") != ""))
    if named.height == 0:
        raise fail("no customer with a first name to preview for; give --customer", ExitCode.USAGE)
    return str(named["customer_id"][0])


def _label(version: dict[str, Any]) -> str:
    tone = version["tone"] or "every tone"
    return f"{tone}, {version['language'] or 'default language'}"


def _text(playbook: str, customer: str, steps: list[dict[str, Any]], sent: list[Any]) -> str:
    from courtship.validate import display_path

    lines = [f"{playbook} for {customer}", ""]
    for step in steps:
        variant = f" — variant {step['variant']}" if "variant" in step else ""
        lines.append(f"step {step['step_id']}{variant} — template {step['template']}")
        for version in step["versions"]:
            lines.append(f"  ── {_label(version)} ({display_path(version['file'])})")
            if "error" in version:
                lines.append(f"     cannot render: {version['error']}")
                continue
            if version["subject"]:
                lines.append(f"     Subject: {version['subject']}")
            lines += [f"     {line}".rstrip() for line in version["text"].rstrip().splitlines()]
        lines.append("")
    for test in sent:
        reason = f": {test['reason']}" if test["reason"] else ""
        lines.append(
            f"test send to {test['seed']} on {test['channel']} ({test['tone'] or 'every tone'}, "
            f"{test['language'] or 'default language'}): {test['status']}{reason}"
        )
    return "\n".join(lines) + "\n"


def _message_name(step: dict[str, Any]) -> str:
    """``send:hello``, or ``send:hello/bold`` for a variant of it."""
    return step["step_id"] + (f"/{step['variant']}" if "variant" in step else "")


def _send_to_seeds(
    project: Project, pb: Any, steps: list[dict[str, Any]], moment: dt.datetime
) -> list[dict[str, Any]]:
    """Deliver every version to every seed through the real channels, marked as a test in the
    subject and in the record (``test_sends``: never a customer's message)."""
    from courtship.channels import Message
    from courtship.cli.common import open_state
    from courtship.cli.run import build_channels

    if not project.seeds:
        raise fail(
            "no seed list: add `seeds:` to courtship.yaml (name, email, phone)", ExitCode.USAGE
        )
    channels = build_channels(project)
    state = open_state(project, dry_run=False)
    sent = []
    try:
        for step in steps:
            send = pb.flow[step["step"]]["send"]
            wanted = [send.get("channel", "email"), *send.get("fallback", [])]
            for seed in project.seeds:
                tried = [c for c in wanted if c != "preferred"] or ["email"]
                usable = [c for c in [*tried, "email", "sms"] if seed.get(SEED_ADDRESS.get(c, c))]
                channel = usable[0] if usable else tried[0]
                for version in step["versions"]:
                    if "error" in version:
                        continue
                    mark = f"[TEST {pb.id} · {_label(version)}]"
                    record = {
                        "seed": seed["name"],
                        "playbook": pb.id,
                        "step_id": step["step_id"],
                        "language": version["language"],
                        "tone": version["tone"],
                        "channel": channel,
                        "address": seed.get(SEED_ADDRESS.get(channel, channel)),
                        "subject": f"{mark} {version['subject']}".strip(),
                    }
                    if not record["address"] or channel not in channels:
                        record |= {"status": "failed", "reason": f"no {channel} for this seed"}
                    else:
                        message = Message(
                            key=f"test:{pb.id}:{_message_name(step)}:{seed['name']}:"
                            f"{version['language']}:{version['tone']}:{moment.isoformat()}",
                            customer_id=f"seed:{seed['name']}",
                            playbook=pb.id,
                            category="transactional",  # a test to the team: no unsubscribe
                            channel=channel,
                            to=str(record["address"]),
                            subject=str(record["subject"]),
                            text=f"{mark}\n\n{version['text']}",
                            tone=version["tone"] or "direct",
                        )
                        delivery = channels[channel].send(message)
                        record |= {"status": delivery.status, "reason": delivery.reason}
                    state.record_test_send(moment, **record)
                    sent.append(record)
    finally:
        close_channels(channels)
        state.close()
    return sent
