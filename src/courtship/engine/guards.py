"""The guards: every message a moment reached, judged column-wise, in the order they run.

consent (a channel the customer consented to, with an address; Instagram only within its
window) → personalization (a first name) → quiet hours (deferred) → cadence → cooldowns and the
weekly cap → priority and suppression → the per-channel cap → dedup keys. Transactional
messages skip cadence, caps and priority, never consent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

import polars as pl

from courtship.catalogue import PREFERRED, TONES
from courtship.engine.facts import ROW
from courtship.engine.plan import REASONS, Decision, iso
from courtship.engine.sequences import Candidates, rows_of
from courtship.playbook import Playbook, parse_duration
from courtship.project import Project
from courtship.state import StateStore
from courtship.templates import environment

INSTAGRAM_WINDOW_HOURS = 24
INSTAGRAM_TEXT = "instagram: outside the 24-hour messaging window"
CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "instagram": "instagram_id"}
#: The place of each channel's address among the address columns ``guard`` reads.
ADDRESS_PLACE = {"email": 0, "sms": 1, "instagram": 2}


def guard(
    candidates: list[Candidates],
    facts: pl.DataFrame,
    state: StateStore,
    sends: pl.DataFrame,
    now: dt.datetime,
    project: Project,
    playbooks: Mapping[str, Playbook],
) -> list[Decision]:
    """The guards, column-wise over every message decided at this moment; then each
    message becomes a ``Decision`` with its channel, tone, status and reason."""
    if not candidates:
        return []
    cooling = _cooldowns(sends, now, playbooks)
    frame = _guarded(candidates, facts, cooling, _sends_last_week(sends, now), now, project)
    quiet_text = f"{REASONS['quiet-hours']} to {project.quiet_end:%H:%M} local"
    stamp = iso(now)
    weekly = project.per_customer_per_week
    fixed = {
        "": "",
        "unknown-friend": "the friend is not a known customer",
        "instagram-only": f"{INSTAGRAM_TEXT}, and no other consented channel",
        "no-name": REASONS["no-name"],
        "quiet-hours": quiet_text,
        "cap": f"{REASONS['cap']}: {weekly} a week",
    }
    decided: list[Decision] = []
    columns = (
        "_group",
        "_at",
        "customer_id",
        "_recipient",
        "tone",
        "_usable",
        "_named",
        "_status",
        "_why",
        "_due",
        "hours_since_last_inbound",
        "cadence_days",
        "days_since_last_message",
        "email",
        "phone",
        "instagram_id",
    )
    for (
        group,
        at,
        customer,
        recipient,
        tone,
        usable,
        named,
        status,
        why,
        due,
        hours,
        cadence,
        last,
        *addresses,
    ) in zip(*(frame.get_column(c).to_list() for c in columns), strict=True):
        batch = candidates[group]
        pb, step = batch.pb, batch.pb.respond[batch.step]["send"]
        moment = batch.moments[at] if batch.moments is not None else None
        to_friend = step.get("to") == "friend"
        decision = Decision(
            customer_id=customer,
            playbook=pb.id,
            step=batch.step,
            category=pb.category,
            priority=pb.priority,
            channel=usable.split(",", 1)[0] if usable else None,
            tone=tone if tone in TONES else "direct",
            template=step["template"],
            status=status,
            to="friend" if to_friend else "customer",
            recipient_id=recipient or "",
            offer=step.get("offer"),
            due_at=due,
        )
        decision.key = hashlib.sha256(
            f"{pb.id}|{customer}|{recipient}|{batch.step}|{moment or stamp}".encode()
        ).hexdigest()[:24]
        decided.append(decision)
        if usable:
            channels = usable.split(",")
            decision.channels = channels
            decision.addresses = {
                c: str(addresses[ADDRESS_PLACE[c]]) for c in channels if c in ADDRESS_PLACE
            }
            decision.hours_since_last_inbound = hours
            decision.max_segments = step.get("max_segments")
        if why in fixed:
            decision.reason = fixed[why]
        elif why == "no-consent":
            decision.reason = REASONS["no-consent"].format(channels=named or "none")
        elif why == "instagram":
            decision.reason = f"{INSTAGRAM_TEXT}; fell back to {decision.channel}"
        elif why == "cadence":
            decision.reason = REASONS["cadence"].format(cadence=cadence) + (
                f"; the last was {last:.1f} days ago"
            )
        else:  # cooldown
            until, playbook = cooling[recipient]
            decision.reason = f"the cooldown after {playbook}, until {until:%Y-%m-%d %H:%M} UTC"

    _priority(decided, project, playbooks)
    dedup_seen = state.dedup_keys()
    dedup_keys: dict[str, str] = {}
    for decision in decided:
        if decision.status == "blocked":
            continue
        pb = playbooks[decision.playbook]
        if pb.dedup_key:
            if pb.id not in dedup_keys:  # the key reads only now and the playbook
                dedup_keys[pb.id] = (
                    environment()
                    .from_string(pb.dedup_key)
                    .render(now=now, playbook={"id": pb.id, "title": pb.title})
                )
            decision.dedup_key = dedup_keys[pb.id]
            if (decision.recipient_id, decision.dedup_key) in dedup_seen:
                decision.status, decision.reason = "blocked", REASONS["duplicate"]
                continue
            dedup_seen.add((decision.recipient_id, decision.dedup_key))
    return decided


def _guarded(
    candidates: list[Candidates],
    facts: pl.DataFrame,
    cooling: dict[str, tuple[dt.datetime, str]],
    sent: dict[str, int],
    now: dt.datetime,
    project: Project,
) -> pl.DataFrame:
    """One row per message decided, in the order decided, with its recipient's facts and
    what the guards say: the usable channels (consented, with an address; Instagram
    only within its window), ``_status`` (send, deferred, blocked), ``_why`` (a reason
    code, see ``_guard``) and ``_due`` (the end of quiet hours)."""
    people = facts.select(
        "customer_id",
        "first_name",
        "tone",
        "preferred_channel",
        "cadence_days",
        "days_since_last_message",
        "local_time",
        "_local_now",
        "email",
        "phone",
        "instagram_id",
        "hours_since_last_inbound",
        *(c for c in facts.columns if c.startswith("consent_")),
    )
    friends = {
        f
        for batch in candidates
        if batch.pb.respond[batch.step]["send"].get("to") == "friend"
        and "friend_id" in batch.who.columns
        for f in batch.who.get_column("friend_id").drop_nulls().to_list()
    }
    rows_of_friends = dict(
        facts.select("customer_id", ROW)
        .filter(pl.col("customer_id").is_in(pl.Series(list(friends), dtype=pl.String()).implode()))
        .iter_rows()
    )
    wanted: list[list[str]] = []
    parts = []
    for number, batch in enumerate(candidates):
        step = batch.pb.respond[batch.step]["send"]
        wanted.append([step["channel"], *step.get("fallback", [])])
        who = batch.who
        if step.get("to") == "friend":
            friend = (
                who.get_column("friend_id").cast(pl.String())
                if "friend_id" in who.columns
                else pl.Series([None] * who.height, dtype=pl.String())
            )
            recipient = friend.alias("_recipient")
            person = friend.replace_strict(rows_of_friends, default=None, return_dtype=pl.UInt32())
        else:
            recipient = who.get_column("customer_id").alias("_recipient")
            person = rows_of(facts, who)
        parts.append(
            pl.DataFrame(
                {
                    "_group": pl.Series([number] * who.height, dtype=pl.UInt32()),
                    "_at": pl.Series(range(who.height), dtype=pl.UInt32()),
                    "_transactional": [batch.pb.category == "transactional"] * who.height,
                    "_playbook": [batch.pb.id] * who.height,
                    "_customer": who.get_column("customer_id").cast(pl.String()),
                    "_recipient": recipient,
                    "_person": person.cast(pl.UInt32()),
                }
            )
        )
    frame = pl.concat(parts)
    known = frame.get_column("_person").is_not_null()
    found = people[frame.get_column("_person").fill_null(0)]
    found = found.with_columns(pl.when(known).then(pl.all()).otherwise(None).name.keep())
    frame = pl.concat([frame, found.drop("customer_id")], how="horizontal").rename(
        {"_customer": "customer_id"}
    )

    # 1. consent, channel by channel: preferred first, then the fallbacks in order.
    names = {c for w in wanted for c in w if c != PREFERRED}
    names |= set(frame.get_column("preferred_channel").drop_nulls().unique().to_list())
    group = pl.col("_group")
    tries = []
    for place in range(max(len(w) for w in wanted)):
        name = group.replace_strict(
            {g: w[place] for g, w in enumerate(wanted) if len(w) > place},
            default=None,
            return_dtype=pl.String(),
        )
        channel = pl.when(name == PREFERRED).then(pl.col("preferred_channel")).otherwise(name)
        tries.append(channel)
    frame = frame.with_columns(
        pl.concat_list(tries).list.drop_nulls().alias("_tried")
    ).with_columns(
        pl.col("_tried")
        .list.eval(pl.element().filter(pl.element() != ""))
        .list.join(", ")
        .alias("_named"),
        pl.concat_list(
            pl.when(_consented(tried, names, frame.columns)).then(tried) for tried in tries
        )
        .list.drop_nulls()
        .list.unique(maintain_order=True)
        .alias("_consented"),
    )
    # Instagram answers only within 24 hours of the customer's last message to us.
    hours = pl.col("hours_since_last_inbound")
    outside = pl.col("_consented").list.contains("instagram") & (
        hours.is_null() | (hours > INSTAGRAM_WINDOW_HOURS)
    )
    frame = frame.with_columns(
        pl.when(outside)
        .then(pl.col("_consented").list.eval(pl.element().filter(pl.element() != "instagram")))
        .otherwise(pl.col("_consented"))
        .alias("_usable"),
        outside.alias("_outside"),
    )
    # 3. quiet hours: deferred to their end, never dropped
    start, end = project.quiet_start, project.quiet_end
    local = pl.col("local_time")
    quiet = ((local >= start) | (local < end)) if start > end else (local >= start) & (local < end)
    local_now = pl.col("_local_now")
    resume = local_now.dt.date().dt.combine(end)
    resume = pl.when(resume <= local_now).then(resume + dt.timedelta(days=1)).otherwise(resume)
    due = (pl.lit(now) + (resume - local_now)).dt.convert_time_zone("UTC")
    # 4. cadence, cooldowns, the weekly cap: marketing only
    cadence, last = pl.col("cadence_days"), pl.col("days_since_last_message")
    too_soon = cadence.is_not_null() & (cadence != 0) & last.is_not_null() & (last < cadence)
    cooler = pl.col("_recipient").replace_strict(
        {c: pb for c, (_, pb) in cooling.items()}, default=None, return_dtype=pl.String()
    )
    cooled = cooler.is_not_null() & (cooler != pl.col("_playbook"))
    weekly = project.per_customer_per_week
    capped = (
        pl.col("_recipient").replace_strict(sent, default=0, return_dtype=pl.Int64()) >= weekly
        if weekly
        else pl.lit(False)
    )
    marketing = ~pl.col("_transactional")
    usable = pl.col("_usable").list.len() > 0
    named = pl.col("first_name").fill_null("").str.strip_chars() != ""
    reached_quiet = known & usable & named
    why = (
        pl.when(~known)
        .then(pl.lit("unknown-friend"))
        .when(pl.col("_consented").list.len() == 0)
        .then(pl.lit("no-consent"))
        .when(~usable)
        .then(pl.lit("instagram-only"))
        .when(~named)
        .then(pl.lit("no-name"))
        .when(marketing & too_soon)
        .then(pl.lit("cadence"))
        .when(marketing & cooled)
        .then(pl.lit("cooldown"))
        .when(marketing & capped)
        .then(pl.lit("cap"))
        .when(quiet)
        .then(pl.lit("quiet-hours"))
        .when(pl.col("_outside"))
        .then(pl.lit("instagram"))
        .otherwise(pl.lit(""))
    )
    return frame.with_columns(why.alias("_why")).with_columns(
        pl.when(pl.col("_why").is_in(["", "instagram"]))
        .then(pl.lit("send"))
        .when(pl.col("_why") == "quiet-hours")
        .then(pl.lit("deferred"))
        .otherwise(pl.lit("blocked"))
        .alias("_status"),
        pl.when(reached_quiet & quiet).then(due).alias("_due"),
        pl.when(known & usable).then(pl.col("_usable").list.join(",")).alias("_usable"),
    )


def _priority(decided: list[Decision], project: Project, playbooks: Mapping[str, Playbook]) -> None:
    """One marketing message per customer per moment (``caps.per_moment``): the highest
    priority wins, and a winner silences the playbooks it suppresses."""
    per_moment = project.per_moment
    live = [d for d in decided if d.status != "blocked" and d.category == "marketing"]
    live.sort(key=lambda d: (d.recipient_id, -d.priority, d.playbook, d.step))
    winners: dict[str, list[Decision]] = {}
    for decision in live:
        won = winners.setdefault(decision.recipient_id, [])
        silencers = [w for w in won if decision.playbook in playbooks[w.playbook].suppresses]
        if silencers:
            decision.status = "blocked"
            decision.reason = REASONS["suppressed"].format(winner=silencers[0].playbook)
        elif len({w.playbook for w in won} - {decision.playbook}) >= per_moment:
            decision.status = "blocked"
            decision.reason = REASONS["priority"].format(winner=won[0].playbook)
        else:
            won.append(decision)
    per_channel = project.per_channel
    if per_channel:
        used: dict[str, int] = {}
        for decision in sorted(live, key=lambda d: (-d.priority, d.recipient_id)):
            if decision.status == "blocked" or decision.channel not in per_channel:
                continue
            used[decision.channel] = used.get(decision.channel, 0) + 1
            if used[decision.channel] > per_channel[decision.channel]:
                decision.status = "blocked"
                decision.reason = (
                    f"{REASONS['cap']}: {per_channel[decision.channel]} on "
                    f"{decision.channel} per moment"
                )


def _cooldowns(
    sends: pl.DataFrame, now: dt.datetime, playbooks: Mapping[str, Playbook]
) -> dict[str, tuple[dt.datetime, str]]:
    """customer → (until, playbook) for marketing playbooks with ``limits.cooldown`` that
    messaged the customer recently: no other marketing playbook speaks to them until then."""
    cooldowns = {
        pb.id: parse_duration(pb.limits["cooldown"])
        for pb in playbooks.values()
        if "cooldown" in pb.limits
    }
    if not cooldowns:
        return {}
    sends = sends.filter(pl.col("playbook").is_in(list(cooldowns)))
    until: dict[str, tuple[dt.datetime, str]] = {}
    for customer, playbook, at in sends.select("customer_id", "playbook", "at").iter_rows():
        end = at + cooldowns[playbook]
        if end > now and (customer not in until or end > until[customer][0]):
            until[customer] = (end, playbook)
    return until


def _sends_last_week(sends: pl.DataFrame, now: dt.datetime) -> dict[str, int]:
    sends = sends.filter(
        (pl.col("category") == "marketing") & (pl.col("at") > now - dt.timedelta(days=7))
    )
    counts = sends.group_by("customer_id").len()
    return dict(zip(counts["customer_id"].to_list(), counts["len"].to_list(), strict=True))


def _consented(channel: pl.Expr, names: set[str], columns: list[str]) -> pl.Expr:
    """The customer consented to ``channel`` (a per-row channel name) and has its address."""
    ok = pl.lit(False)
    for name in sorted(names):
        consent = f"consent_{name}"
        if consent not in columns:
            continue
        given = pl.col(consent).fill_null(False).cast(pl.Boolean(), strict=False)
        address = CHANNEL_ADDRESS.get(name)
        if address is not None:
            given = given & pl.col(address).is_not_null() & (pl.col(address) != "")
        ok = pl.when(channel == name).then(given).otherwise(ok)
    return ok.fill_null(False)
