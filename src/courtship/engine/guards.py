"""The guards: every message a moment reached, judged in the order they run (``GUARDS``).

Column-wise over all messages of the moment first (who, consent, name, quiet hours, cadence,
cooldowns, the weekly cap), then per message (dedup keys, expiry), then per customer (priority,
suppression and the per-channel cap pick among the messages that can go out). A guard either
*holds* a message back (it is deferred, due when the guard allows, and judged again by every
guard then) or *blocks* it (it can never go out). Transactional messages skip cadence, caps and
priority, never consent, the name or quiet hours.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
from collections.abc import Mapping

import polars as pl

from courtship import experiments
from courtship.catalogue import PREFERRED, TONES
from courtship.engine.facts import rows_of_customers
from courtship.engine.plan import Decision, iso, reason
from courtship.engine.sequences import (
    BEST_FROM,
    DEDUP,
    DEFAULT_EXPIRY,
    KEY,
    SINCE,
    Candidates,
    rows_of,
)
from courtship.playbook import Playbook, parse_duration
from courtship.project import Project
from courtship.state import StateStore
from courtship.templates import dedup_key

INSTAGRAM_WINDOW_HOURS = 24
CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "instagram": "instagram_id"}
#: The place of each channel's address among the address columns ``Judge`` reads.
ADDRESS_PLACE = {"email": 0, "sms": 1, "instagram": 2}
#: A message over a per-channel cap is due at the next run.
NEXT_RUN = dt.timedelta(microseconds=1)

#: The guards, in the order they run: (code, what it does, whom it applies to). ``docs/engine.md``
#: lists them in this order (a test holds the page to this list).
GUARDS: list[tuple[str, str, str]] = [
    ("unknown-friend", "blocks a message to a friend who is no known customer", "all"),
    ("no-consent", "blocks a message with no consented channel that has an address", "all"),
    ("instagram-only", "blocks it when Instagram, outside its 24-hour window, is the only one",
     "all"),
    ("no-name", "blocks a message to a customer without a first name", "all"),
    ("duplicate", "blocks a message whose dedup key was already sent to them", "all"),
    ("expired", "blocks a message held back longer than its step's `expires`", "all"),
    ("template-broken", "holds it for the next run when its playbook's template or dedup key "
     "fails at this moment", "all"),
    ("quiet-hours", "holds it until quiet hours end in their time zone", "all"),
    ("cadence", "holds it until their cadence allows another message", "marketing"),
    ("cooldown", "holds it until another playbook's cooldown is over", "marketing"),
    ("cap", "holds it until they are under the weekly cap again", "marketing"),
    ("best-hour", "holds a message sent `at: best_hour` until their best local hour, within "
     "its window", "all"),
    ("suppressed", "blocks it when a playbook that speaks suppresses its playbook", "marketing"),
    ("priority", "blocks it when higher-priority playbooks fill the moment's allowance",
     "marketing"),
    ("channel-cap", "holds it for the next run when its channel's cap is reached", "marketing"),
    ("control-group", "blocks it when they are in the project's control group", "marketing"),
    ("holdout", "blocks it when they are in its playbook's holdout", "marketing"),
]  # fmt: skip
#: Codes of a guard that holds a message back (deferred) rather than blocks it.
HOLDS = frozenset(
    {"template-broken", "best-hour", "quiet-hours", "cadence", "cooldown", "cap", "channel-cap"}
)
#: How long a message sent ``at: best_hour`` may wait for it unless its step says (``within``).
DEFAULT_BEST_HOUR_WINDOW = "24h"


class Judge:
    """The guards of one moment. What the state store says (recent sends, cooldowns, dedup
    keys) is read once; what the moment has sent so far is kept across its rounds (a sequence
    that goes on past a message reaches its next one in a later round)."""

    def __init__(
        self,
        state: StateStore,
        sends: pl.DataFrame,
        now: dt.datetime,
        project: Project,
        playbooks: Mapping[str, Playbook],
    ) -> None:
        self.now, self.project, self.playbooks = now, project, playbooks
        self.cooling = _cooldowns(sends, now, playbooks)
        self.week = _sends_last_week(sends, now, project.per_customer_per_week)
        self.dedup_seen = state.dedup_keys()
        self.dedup_keys: dict[str, str] = {}
        #: playbooks whose template or dedup key fails at this moment, with why
        self.broken: dict[str, str] = {}
        self.speakers: dict[str, list[Decision]] = {}
        self.used: collections.Counter[str] = collections.Counter()

    def judge(self, candidates: list[Candidates], facts: pl.DataFrame) -> list[Decision]:
        """Every message of ``candidates`` as a ``Decision`` with its channel, tone, status,
        guard and reason."""
        if not candidates:
            return []
        now, project = self.now, self.project
        counts = {customer: count for customer, (count, _) in self.week.items()}
        frame = _guarded(candidates, facts, self.cooling, counts, now, project)
        stamp = iso(now)
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
            "best_hour",
            "_best_local",
            "email",
            "phone",
            "instagram_id",
        )
        kept = {id(batch): _kept(batch) for batch in candidates}
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
            best_hour,
            best_local,
            *addresses,
        ) in zip(*(frame.get_column(c).to_list() for c in columns), strict=True):
            batch = candidates[group]
            pb, step = batch.pb, batch.pb.flow[batch.step]["send"]
            moment = batch.moments[at] if batch.moments is not None else None
            since, key, dedup, friend, best_from = (values[at] for values in kept[id(batch)])
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
                to="friend" if step.get("to") == "friend" else "customer",
                recipient_id=recipient or "",
                offer=step.get("offer"),
                due_at=due,
                step_id=pb.step_ids[batch.step],
                guard=why,
                held_since=dt.datetime.fromisoformat(since) if since else None,
                friend_id=friend,
                origin=(batch, at),
                wanted=named.split(", ", 1)[0] if named else "",
            )
            if step.get("variants"):
                _vary(decision, step["variants"])
            decision.key = (
                key
                or hashlib.sha256(
                    f"{pb.id}|{customer}|{recipient}|{decision.step_id}|{moment or stamp}".encode()
                ).hexdigest()[:24]
            )
            decided.append(decision)
            if usable:
                channels = usable.split(",")
                decision.channels = channels
                decision.addresses = {
                    c: str(addresses[ADDRESS_PLACE[c]]) for c in channels if c in ADDRESS_PLACE
                }
                decision.hours_since_last_inbound = hours
                decision.max_segments = step.get("max_segments")
            self._final(decision, pb, step, dedup)
            self._explain(decision, named, cadence, last)
            # the best hour's window, counted from when it first waited for it
            decision.best_from = dt.datetime.fromisoformat(best_from) if best_from else None
            if decision.guard == "best-hour":
                decision.best_from = decision.best_from or now
                decision.reason = _best_hour_reason(step, best_hour, best_local)
        self._select(decided)
        return decided

    def _final(
        self, decision: Decision, pb: Playbook, step: dict[str, object], dedup: str | None
    ) -> None:
        """The per-message guards: the dedup key (kept from when the message was first
        decided), then expiry; and when a guard holds it, until when."""
        if decision.status == "blocked":
            return
        expires = parse_duration(str(step.get("expires", DEFAULT_EXPIRY)))
        too_old = decision.held_since is not None and self.now - decision.held_since > expires
        if pb.id in self.broken and not too_old:  # its key is read when it can go out
            decision.status, decision.guard = "deferred", "template-broken"
            decision.due_at = self.now + NEXT_RUN
            return
        if pb.dedup_key and pb.id not in self.broken:
            if dedup is None:
                if pb.id not in self.dedup_keys:  # the key reads only now and the playbook
                    self.dedup_keys[pb.id] = dedup_key(pb, self.now)
                dedup = self.dedup_keys[pb.id]
            decision.dedup_key = dedup
            if (decision.recipient_id, dedup) in self.dedup_seen:
                decision.status, decision.guard, decision.due_at = "blocked", "duplicate", None
                return
        if too_old:
            decision.status, decision.guard, decision.due_at = "blocked", "expired", None
            return
        if decision.guard == "cooldown":
            decision.due_at = self.cooling[decision.recipient_id][0]
        elif decision.guard == "cap":
            decision.due_at = self.week[decision.recipient_id][1]

    def _explain(
        self, decision: Decision, named: str | None, cadence: float | None, last: float | None
    ) -> None:
        """The reason of a decision, in words, from the one table of reasons."""
        code = decision.guard
        values: dict[str, object] = {}
        if code == "best-hour":  # said with the best hour (``_best_hour_reason``)
            return
        if code == "no-consent":
            values["channels"] = named or "none"
        elif code == "duplicate":
            values["key"] = decision.dedup_key
        elif code == "expired":
            step = self.playbooks[decision.playbook].flow[decision.step]["send"]
            values |= {"since": decision.held_since, "expires": step.get("expires", DEFAULT_EXPIRY)}
        elif code == "quiet-hours":
            values["end"] = self.project.quiet_end
        elif code == "cadence":
            values |= {"cadence": cadence, "last": last or 0.0}
        elif code == "cooldown":
            until, playbook = self.cooling[decision.recipient_id]
            values |= {"until": until, "playbook": playbook}
        elif code == "cap":
            values["weekly"] = self.project.per_customer_per_week
        elif code == "instagram":
            values["channel"] = decision.channel
        elif code == "template-broken":
            values["why"] = self.broken[decision.playbook]
        decision.reason = reason(code, **values) if code else ""

    def _select(self, decided: list[Decision]) -> None:
        """Priority, suppression and the per-channel cap, among the marketing messages that
        can go out: each customer's messages by priority (then playbook, then step); at most
        ``caps.per_moment`` playbooks speak to a customer, and a speaker silences the playbooks
        it suppresses. A channel's cap goes to the messages held back longest, then to the
        highest priority; a customer whose pick is over its channel's cap may hear from the
        next in priority instead."""
        per_moment, per_channel = self.project.per_moment, self.project.per_channel or {}
        queues: dict[str, collections.deque[Decision]] = {}
        live = [d for d in decided if d.status == "send" and d.category == "marketing"]
        live.sort(key=lambda d: (d.recipient_id, -d.priority, d.playbook, d.step))
        for decision in live:
            queues.setdefault(decision.recipient_id, collections.deque()).append(decision)
        while queues:
            picks = []
            for recipient in list(queues):
                queue = queues[recipient]
                speakers = self.speakers.setdefault(recipient, [])
                while queue and self._silenced(queue[0], speakers, per_moment):
                    queue.popleft()
                if not queue:
                    del queues[recipient]
                    continue
                picks.append(queue.popleft())
            picks.sort(
                key=lambda d: (d.held_since or self.now, -d.priority, d.recipient_id, d.playbook)
            )
            for decision in picks:
                cap = per_channel.get(decision.channel or "")
                if cap is not None and self.used[decision.channel or ""] >= cap:
                    decision.status, decision.guard = "deferred", "channel-cap"
                    decision.due_at = self.now + NEXT_RUN
                    decision.reason = reason("channel-cap", cap=cap, channel=decision.channel)
                    continue
                self.used[decision.channel or ""] += 1
                self.speakers[decision.recipient_id].append(decision)
        self._hold_out(decided)
        for decision in decided:  # within a moment, a dedup key goes out once
            if decision.status == "send" and decision.dedup_key is not None:
                self.dedup_seen.add((decision.recipient_id, decision.dedup_key))

    def _hold_out(self, decided: list[Decision]) -> None:
        """The experiments: a marketing message that would go out to a customer of the
        project's control group, or of its playbook's holdout, is blocked and recorded as held
        out; one that goes out in a playbook that measures itself records its arm."""
        control = self.project.control_group
        for decision in decided:
            if decision.status != "send" or decision.category != "marketing":
                continue
            pb = self.playbooks[decision.playbook]
            measured = pb.goal is not None or pb.holdout > 0 or bool(decision.arm)
            code, arm, part = "", "", 0.0
            if experiments.in_control_group(decision.customer_id, control):
                code, arm, part = "control-group", experiments.CONTROL, control
            elif experiments.held_out(pb.id, decision.customer_id, pb.holdout):
                code, arm, part = "holdout", experiments.HOLDOUT, pb.holdout
            if code:
                decision.status, decision.guard, decision.due_at = "blocked", code, None
                decision.reason = reason(code, share=f"{part * 100:g}%")
                decision.arm = arm if measured else ""
            elif measured and not decision.arm:
                decision.arm = experiments.MESSAGE

    def _silenced(self, decision: Decision, speakers: list[Decision], per_moment: int) -> bool:
        """Whether a playbook that speaks to this customer at this moment keeps ``decision``
        from going out (and then says which)."""
        silencers = [
            s for s in speakers if decision.playbook in self.playbooks[s.playbook].suppresses
        ]
        code, winner = "", ""
        if silencers:
            code, winner = "suppressed", silencers[0].playbook
        elif decision.playbook not in {s.playbook for s in speakers} and (
            len({s.playbook for s in speakers}) >= per_moment
        ):
            code, winner = "priority", speakers[0].playbook
        if not code:
            return False
        decision.status, decision.guard, decision.due_at = "blocked", code, None
        decision.reason = reason(code, winner=winner)
        return True


def _vary(decision: Decision, variants: list[dict[str, object]]) -> None:
    """The variant of the message this customer gets: its template, tone or offer."""
    step_id = decision.step_id
    variant = experiments.variant_of(decision.playbook, step_id, decision.customer_id, variants)
    decision.arm = str(variant["id"])
    decision.template = str(variant.get("template", decision.template))
    if variant.get("tone") in TONES:
        decision.tone = str(variant["tone"])
    if isinstance(variant.get("offer"), dict):
        decision.offer = variant["offer"]  # type: ignore[assignment]


def _best_hour_reason(step: Mapping[str, object], hour: int, local: dt.datetime) -> str:
    """Why a message sent ``at: best_hour`` waits, and until when (local time)."""
    if local.hour == hour and local.minute == 0:
        return reason("best-hour", local=local)
    within = str(step.get("within", DEFAULT_BEST_HOUR_WINDOW))
    return reason("best-hour-window", local=local, within=within, hour=hour)


def _best_hour_expr(now: dt.datetime) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Whether a message waits for its recipient's best hour, and until when (UTC and local).

    From the moment it first waited for it (``_first``; now, when every other guard lets it
    through for the first time): the next time their local clock reads
    ``best_hour``:00 if that comes within the step's window (``_within``); otherwise the end of
    the window nearer to a best hour — the end of the window, or at once (when the best hour
    just went by). Local times are read with the offset the customer's zone has now."""
    local_now = pl.col("_local_now")
    first = local_now - (pl.lit(now) - pl.col("_first"))
    hour = pl.duration(hours=pl.col("best_hour"))
    today = first.dt.truncate("1d") + hour
    following = pl.when(today < first).then(today + dt.timedelta(days=1)).otherwise(today)
    previous = following - dt.timedelta(days=1)
    end = first + pl.col("_within")
    target = (
        pl.when(following <= end)
        .then(following)
        .when(following - end < first - previous)
        .then(end)
        .otherwise(first)
    )
    at = (pl.lit(now) + (target - local_now)).dt.convert_time_zone("UTC")
    waits = pl.col("_best") & pl.col("best_hour").is_not_null() & (at > pl.lit(now))
    return waits.fill_null(False), at, target


def _kept(batch: Candidates) -> list[list[object]]:
    """Per customer of a batch: since when its message is held, its kept message and dedup
    keys, and the referral's friend (None where the batch has none)."""
    none = [None] * batch.who.height
    return [batch.column(name) or none for name in (SINCE, KEY, DEDUP, "friend_id", BEST_FROM)]


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
        "best_hour",
        *(c for c in facts.columns if c.startswith(("consent_", "_marketing_withdrawn_"))),
    )
    if project.preferred_channel == "learned":  # none in the file: the one they answer most
        people = people.with_columns(
            pl.coalesce(
                pl.col("preferred_channel").cast(pl.String()).replace("", None),
                facts.get_column("best_channel").cast(pl.String()),
            ).alias("preferred_channel")
        )
    friends = {
        f
        for batch in candidates
        if batch.pb.flow[batch.step]["send"].get("to") == "friend"
        and "friend_id" in batch.who.columns
        for f in batch.who.get_column("friend_id").drop_nulls().to_list()
    }
    rows_of_friends = dict(
        rows_of_customers(facts, pl.Series(list(friends), dtype=pl.String())).iter_rows()
    )
    wanted: list[list[str]] = []
    parts = []
    for number, batch in enumerate(candidates):
        step = batch.pb.flow[batch.step]["send"]
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
        since = batch.column(BEST_FROM) or [None] * who.height
        within = parse_duration(str(step.get("within", DEFAULT_BEST_HOUR_WINDOW)))
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
                    "_best": [step.get("at") == "best_hour"] * who.height,
                    "_within": pl.Series([within] * who.height, dtype=pl.Duration("us")),
                    "_first": pl.Series(
                        [dt.datetime.fromisoformat(t) if t else now for t in since],
                        dtype=pl.Datetime("us", "UTC"),
                    ),
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
        .list.unique(maintain_order=True)
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
    # a message sent at their best hour waits for it, within its window
    best_wait, best_due, best_local = _best_hour_expr(now)
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
    why = (
        pl.when(~known)
        .then(pl.lit("unknown-friend"))
        .when(pl.col("_consented").list.len() == 0)
        .then(pl.lit("no-consent"))
        .when(~usable)
        .then(pl.lit("instagram-only"))
        .when(~named)
        .then(pl.lit("no-name"))
        .when(quiet)
        .then(pl.lit("quiet-hours"))
        .when(marketing & too_soon)
        .then(pl.lit("cadence"))
        .when(marketing & cooled)
        .then(pl.lit("cooldown"))
        .when(marketing & capped)
        .then(pl.lit("cap"))
        .when(best_wait)
        .then(pl.lit("best-hour"))
        .when(pl.col("_outside"))
        .then(pl.lit("instagram"))
        .otherwise(pl.lit(""))
    )
    return frame.with_columns(why.alias("_why")).with_columns(
        pl.when(pl.col("_why").is_in(["", "instagram"]))
        .then(pl.lit("send"))
        .when(pl.col("_why").is_in(list(HOLDS)))
        .then(pl.lit("deferred"))
        .otherwise(pl.lit("blocked"))
        .alias("_status"),
        pl.when(pl.col("_why") == "best-hour")
        .then(best_due)
        .when(pl.col("_why") == "quiet-hours")
        .then(due)
        .when(pl.col("_why") == "cadence")
        .then(
            pl.lit(now)
            + pl.duration(
                seconds=((cadence - last.fill_null(0)) * 86_400).round(0).cast(pl.Int64())
            )
        )
        .alias("_due"),
        pl.when(known & usable).then(pl.col("_usable").list.join(",")).alias("_usable"),
        pl.when(pl.col("_why") == "best-hour").then(best_local).alias("_best_local"),
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


def _sends_last_week(
    sends: pl.DataFrame, now: dt.datetime, weekly: int | None
) -> dict[str, tuple[int, dt.datetime]]:
    """customer → (marketing messages in the last 7 days, when they are under the weekly cap
    again: the moment the oldest that keeps them at it is a week old)."""
    sends = sends.filter(
        (pl.col("category") == "marketing") & (pl.col("at") > now - dt.timedelta(days=7))
    )
    counts = sends.group_by("customer_id").agg(pl.len(), pl.col("at").sort())
    week: dict[str, tuple[int, dt.datetime]] = {}
    for customer, count, ats in counts.iter_rows():
        free = ats[max(0, count - weekly)] if weekly else ats[0]
        week[customer] = (count, free + dt.timedelta(days=7))
    return week


def _consented(channel: pl.Expr, names: set[str], columns: list[str]) -> pl.Expr:
    """The customer consented to ``channel`` (a per-row channel name) and has its address; a
    marketing message also needs their marketing consent not withdrawn (an unsubscribe)."""
    ok = pl.lit(False)
    for name in sorted(names):
        consent = f"consent_{name}"
        if consent not in columns:
            continue
        given = pl.col(consent).fill_null(False).cast(pl.Boolean(), strict=False)
        withdrawn = f"_marketing_withdrawn_{name}"
        if withdrawn in columns:
            given = given & (pl.col("_transactional") | ~pl.col(withdrawn).fill_null(False))
        address = CHANNEL_ADDRESS.get(name)
        if address is not None:
            given = given & pl.col(address).is_not_null() & (pl.col(address) != "")
        ok = pl.when(channel == name).then(given).otherwise(ok)
    return ok.fill_null(False)
