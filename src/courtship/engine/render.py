"""Rendering: the text of every message a moment decided, from its template in the recipient's
tone, and of every team notification. A template is found and compiled once per moment, and each
message's context holds only what its template reads, as read-only copies.

Before a moment is decided, ``broken_playbooks`` renders each playbook's templates once with
sample values, and its dedup key: a playbook whose template or key fails (or goes over the
limits of ``courtship.sandbox``) is disabled at that moment, its messages held for the next run.
A template that fails later, for one message, blocks that message and the playbook's other
messages of the moment."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from courtship.engine.plan import Decision, Plan, iso, reason
from courtship.playbook import Playbook, parse_duration
from courtship.project import Project
from courtship.sandbox import frozen
from courtship.templates import (
    OFFER_FIELDS,
    Compiled,
    TemplateFailure,
    choose,
    compiled,
    dedup_key,
    languages,
    outside_its_folder,
    sample_context,
    variants,
)
from courtship.unsubscribe import Unsubscriber


def broken_playbooks(
    playbooks: Mapping[str, Playbook],
    project: Project,
    now: dt.datetime,
    fact_types: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """(playbook id → why it is disabled at ``now``, playbook id → its dedup key): each
    playbook's templates rendered once with sample values, and its dedup key, under the limits.
    A template that cannot be read or compiled, or fails, disables its playbook."""
    broken: dict[str, str] = {}
    keys: dict[str, str] = {}
    shelf = _Shelf()
    brand = frozen(project.brand)
    for pb in playbooks.values():
        mine = {"id": pb.id, "title": pb.title}
        try:
            if pb.dedup_key:
                keys[pb.id] = dedup_key(pb, now)
            for step in _steps(pb):
                if not isinstance(step.get("template"), str):
                    continue
                hearing = "friend" if step.get("to") == "friend" else "customer"
                offer = frozen(_offer_of(step.get("offer"), "sample", hearing, now))
                every = shelf.by_language(pb, step["template"]).values()
                for file in (file for tones in every for file in tones.values()):
                    template = shelf.compiled(file)
                    context = sample_context(
                        template.file, fact_types, brand=brand, playbook=mine, now=now
                    )
                    template.render(context | {"offer": offer})
        except TemplateFailure as failure:
            broken[pb.id] = str(failure)
    return broken, keys


def _steps(pb: Playbook) -> list[dict[str, Any]]:
    """The send and notify steps of a playbook (what names a template)."""
    steps = [
        step[kind]
        for step in pb.flow
        for kind in ("send", "notify")
        if isinstance(step.get(kind), dict)
    ]
    return steps + [  # each variant of a message, with what it changes
        step | variant
        for step in steps
        for variant in step.get("variants") or []
        if isinstance(variant, dict)
    ]


def render(
    plan: Plan, facts: pl.DataFrame, project: Project, playbooks: Mapping[str, Playbook]
) -> None:
    """Write every message a plan decided from its template, in the recipient's tone; a
    template that fails blocks its message with the reason."""
    todo = [d for d in plan.decisions if d.status == "send"]  # a held one is written when due
    wanted = {d.recipient_id for d in todo} | {d.customer_id for d in todo}
    wanted |= {d.friend_id for d in todo if d.friend_id}
    wanted |= {note["customer"] for note in plan.notifications}
    if not wanted:
        return
    shelf = _Shelf()
    # Only the facts some template reads are read out of the frame, once per person.
    read = {"customer_id", "first_name", "last_name", "language"}
    files = [
        file
        for pb_id, name in {(d.playbook, d.template) for d in todo}
        for tones in shelf.by_language(playbooks[pb_id], name).values()
        for file in tones.values()
    ]
    for note in plan.notifications:
        files += shelf.variants(playbooks[note["playbook"]], note["template"] or "").values()
    for file in files:
        try:
            read |= set(shelf.compiled(file).file.variables)
        except TemplateFailure:
            continue  # its messages are blocked with the reason below
    columns = [c for c in facts.columns if c in read and not c.startswith("_")]
    people = {
        r["customer_id"]: r
        for r in facts.select(columns)
        .filter(pl.col("customer_id").is_in(pl.Series(list(wanted)).implode()))
        .iter_rows(named=True)
    }
    for note in plan.notifications:
        _render_note(note, people.get(note["customer"], {}), plan.now, shelf, project, playbooks)
    # each recipient reads their language's file, in their tone (templates.choose)
    chosen: list[tuple[Decision, Path | None]] = [
        (
            d,
            choose(
                shelf.by_language(playbooks[d.playbook], d.template),
                people.get(d.recipient_id, {}).get("language"),
                d.tone,
            ),
        )
        for d in todo
    ]
    links = Unsubscriber.of(project)  # signed one-click links: see courtship.unsubscribe
    brand = frozen(project.brand)
    failed: dict[str, str] = {}  # playbook → the failure that disabled it at this moment
    for decision, file in chosen:
        pb = playbooks[decision.playbook]
        if file is None:
            decision.status, decision.guard = "blocked", "template-missing"
            decision.reason = reason("template-missing")
            continue
        if pb.id in failed:
            decision.status, decision.guard = "blocked", "template-failed"
            decision.reason = failed[pb.id]
            continue
        try:
            template = shelf.compiled(file)
        except TemplateFailure as failure:
            decision.status, decision.guard = "blocked", "template-failed"
            decision.reason = failed[pb.id] = plan.disabled[pb.id] = reason(
                "template-failed", file=file.name, error=failure
            )
            continue
        person = people[decision.recipient_id]
        # In a referral, `friend` is the friend and `referrer` the referrer, whoever hears.
        friend = people.get(decision.friend_id or "") if decision.friend_id else None
        referrer = people.get(decision.customer_id) if decision.friend_id else None
        context = {k: frozen(v) for k, v in person.items() if k in template.file.variables}
        decision.unsubscribe_url = links.url(decision.recipient_id, decision.channel)
        context.update(
            offer=frozen(_offer(decision, plan.now)),
            friend=frozen(_person(friend)),
            referrer=frozen(_person(referrer)),
            brand=brand,
            playbook=frozen({"id": pb.id, "title": pb.title}),
            now=plan.now,
            unsubscribe_url=decision.unsubscribe_url,
        )
        try:
            decision.subject, decision.text = template.render(context)
        except TemplateFailure as failure:
            decision.status, decision.guard = "blocked", "template-failed"
            decision.reason = failed[pb.id] = plan.disabled[pb.id] = reason(
                "template-failed", file=file.name, error=failure
            )


def preview(
    pb: Playbook,
    step: int,
    person: dict[str, Any],
    project: Project,
    now: dt.datetime,
    variant: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every file of send step ``step``'s template — each language, each tone — rendered for
    ``person`` (their facts) at ``now``, as ``courtship preview`` shows it. In a referral's
    message the same person stands in for the friend and the referrer. ``variant``: one of the
    step's ``variants`` (its template, offer, and only its tone)."""
    send = pb.flow[step]["send"] | dict(variant or {})
    forced = (variant or {}).get("tone")
    shelf = _Shelf()
    brand = frozen(project.brand)
    customer_id = str(person.get("customer_id", ""))
    hearing = "friend" if send.get("to") == "friend" else "customer"
    offer = frozen(_offer_of(send.get("offer"), f"preview|{pb.id}|{customer_id}", hearing, now))
    channel = send.get("channel", "email")
    if channel == "preferred":
        channel = person.get("preferred_channel") or "email"
    link = (
        Unsubscriber.of(project).url(customer_id, channel) if pb.category == "marketing" else None
    )
    out = []
    for language, tones in shelf.by_language(pb, send["template"]).items():
        for tone, file in tones.items():
            if forced and tone and tone != forced:
                continue
            entry: dict[str, Any] = {"language": language, "tone": tone, "file": file}
            try:
                template = shelf.compiled(file)
                context = {k: frozen(v) for k, v in person.items() if k in template.file.variables}
                context.update(
                    offer=offer,
                    friend=frozen(_person(person)),
                    referrer=frozen(_person(person)),
                    brand=brand,
                    playbook=frozen({"id": pb.id, "title": pb.title}),
                    now=now,
                    unsubscribe_url=link,
                )
                entry["subject"], entry["text"] = template.render(context)
            except TemplateFailure as failure:
                entry["error"] = str(failure)
            out.append(entry)
    return out


def _render_note(
    note: dict[str, Any],
    person: dict[str, Any],
    now: dt.datetime,
    shelf: _Shelf,
    project: Project,
    playbooks: Mapping[str, Playbook],
) -> None:
    """A team notification: its template (``NAME.md``) or a one-line summary."""
    pb = playbooks[note["playbook"]]
    note["key"] = hashlib.sha256(
        f"team|{note['team']}|{pb.id}|{note['customer']}|{iso(now)}".encode()
    ).hexdigest()[:24]
    note["subject"] = f"[{note['urgency']}] {pb.title}: {note['customer']}"
    note["text"] = _note_text(note, person)
    files = shelf.variants(pb, note["template"]) if note["template"] else {}
    file = files.get("") or next(iter(files.values()), None)
    if file is None:
        return
    try:
        template = shelf.compiled(file)
        context = {k: frozen(v) for k, v in person.items() if k in template.file.variables}
        context.update(
            offer=frozen(dict.fromkeys(OFFER_FIELDS)),
            friend=frozen({"first_name": None}),
            brand=frozen(project.brand),
            playbook=frozen({"id": pb.id, "title": pb.title}),
            now=now,
            unsubscribe_url=None,
        )
        note["text"] = template.render(context)[1]
    except TemplateFailure as failure:
        note["text"] += f" (template {file.name} failed: {failure})"


class _Shelf:
    """The template files of one plan, found and compiled once each."""

    def __init__(self) -> None:
        self._variants: dict[tuple[str, str], dict[str, Path]] = {}
        self._languages: dict[tuple[str, str], dict[str, dict[str, Path]]] = {}
        self._compiled: dict[Path, Compiled] = {}

    def variants(self, pb: Playbook, name: str) -> dict[str, Path]:
        key = (pb.id, name)
        if key not in self._variants:
            found = variants(_templates_folder(pb), name) if name else {}
            # a link outside the playbooks folder is never read (validate says where)
            self._variants[key] = {
                tone: file for tone, file in found.items() if not outside_its_folder(file)
            }
        return self._variants[key]

    def by_language(self, pb: Playbook, name: str) -> dict[str, dict[str, Path]]:
        """Language (``""``: the default files) → tone → file, of template ``name``."""
        key = (pb.id, name)
        if key not in self._languages:
            folder = _templates_folder(pb)
            found = {"": self.variants(pb, name)}
            for language in languages(folder, name) if name else []:
                files = variants(folder, name, language).items()
                found[language] = {t: f for t, f in files if not outside_its_folder(f)}
            self._languages[key] = found
        return self._languages[key]

    def compiled(self, file: Path) -> Compiled:
        if file not in self._compiled:
            self._compiled[file] = compiled(file)
        return self._compiled[file]


def _note_text(note: dict[str, Any], person: dict[str, Any]) -> str:
    name = " ".join(filter(None, [person.get("first_name"), person.get("last_name")]))
    return (
        f"{note['playbook']} asks {note['team']} to look after {name or 'a customer'} "
        f"({note['customer']}), urgency {note['urgency']}."
    )


def _templates_folder(pb: Playbook) -> Path:
    return _folder_beside(pb.document.path)


@functools.lru_cache(maxsize=1024)
def _folder_beside(path: str) -> Path:
    return Path(path).parent / "templates"


def _person(facts: dict[str, Any] | None) -> dict[str, Any]:
    """Another person of a message (a referral's friend or referrer) as templates see them."""
    facts = facts or {}
    return {"first_name": facts.get("first_name"), "last_name": facts.get("last_name")}


def _offer(decision: Decision, now: dt.datetime) -> dict[str, Any]:
    """The offer as templates see it: every field present, None where it does not apply.

    ``code`` is the code of the person the offer is for (by default, whoever hears); with
    ``for: both`` the recipient gets their own ``code`` and ``friend_code``, the other
    person's, to pass on."""
    return _offer_of(decision.offer, decision.key, decision.to, now)


def _offer_of(
    given: dict[str, Any] | None, key: str, hearing: str, now: dt.datetime
) -> dict[str, Any]:
    """The offer ``given`` in a send step, as a message with idempotency ``key`` to
    ``hearing`` (customer or friend) sees it."""
    offer: dict[str, Any] = dict.fromkeys(OFFER_FIELDS) | dict(given or {})
    if not given:
        return offer
    prefix = offer.get("code_prefix", "GIFT")

    def code(role: str) -> str:
        digest = hashlib.sha256(f"{key}|{role}".encode()).hexdigest()[:6].upper()
        return f"{prefix}-{digest}"

    other = "customer" if hearing == "friend" else "friend"
    meant = offer.get("for", hearing)
    if meant == "both":
        offer["code"], offer["friend_code"] = code(hearing), code(other)
    else:
        offer["code"] = code(meant)
    if "valid_for" in offer:
        offer["expires_on"] = (now + parse_duration(offer["valid_for"])).date().isoformat()
    return offer
