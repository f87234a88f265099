"""What the library as a whole should do: the seed's rules of courtship, one playbook each."""

from __future__ import annotations

from collections.abc import Iterator

from courtship.findings import Finding
from courtship.lint.registry import Library, library_finding, rule, sends
from courtship.playbook import Playbook, facts_in

STAGES = ("new", "onboarding", "active", "loyal", "at-risk", "lapsed", "churned", "advocate")
#: Facts that say a customer is waiting for an answer from us.
UNANSWERED_FACTS = {"unanswered_inbound_hours", "unanswered_inbound_count"}


def _messages(playbook: Playbook) -> bool:
    return any(send.get("to", "customer") == "customer" for _, send in sends(playbook))


@rule("stage-coverage", scope="library")
def stage_coverage(lib: Library) -> Iterator[Finding]:
    covered = {pb.stage for pb in lib.enabled}
    for stage in STAGES:
        if stage not in covered:
            yield library_finding(
                lib,
                "stage-coverage",
                f"no playbook serves customers at the '{stage}' stage",
                "write one, even a gentle check-in: customers at every stage notice silence",
            )


@rule("no-birthday-playbook", scope="library")
def no_birthday(lib: Library) -> Iterator[Finding]:
    if not any(pb.trigger.get("anniversary") == "birthday" and _messages(pb) for pb in lib.enabled):
        yield library_finding(
            lib,
            "no-birthday-playbook",
            "no playbook writes to customers on their birthday",
            "add one with trigger: {anniversary: birthday}: never forget their birthday",
        )


@rule("unanswered-inbound-uncovered", scope="library")
def unanswered(lib: Library) -> Iterator[Finding]:
    def answers(pb: Playbook) -> bool:
        becomes = pb.trigger.get("becomes")
        reads = facts_in(becomes) if isinstance(becomes, dict) else set()
        listens = pb.trigger.get("event") == "inbound_message" or bool(reads & UNANSWERED_FACTS)
        return listens and _messages(pb)  # telling the team alone leaves them in silence

    if not any(answers(pb) for pb in lib.enabled):
        yield library_finding(
            lib,
            "unanswered-inbound-uncovered",
            "no playbook answers a customer whose message or call waits for an answer",
            "add a transactional playbook on becomes: {fact: unanswered_inbound_hours, gte: 4} "
            "that tells them a person is on it and notifies your team",
        )


@rule("no-win-back", scope="library")
def no_win_back(lib: Library) -> Iterator[Finding]:
    if not any(
        pb.stage == "churned" and pb.category == "marketing" and _messages(pb) for pb in lib.enabled
    ):
        yield library_finding(
            lib,
            "no-win-back",
            "no marketing playbook writes to churned customers: nothing tries to win them back",
            "add a playbook with stage: churned that sends them a message (see win-back.yaml)",
        )


@rule("no-referral-playbook", scope="library")
def no_referral(lib: Library) -> Iterator[Finding]:
    if not any(pb.trigger.get("event") == "referral" and _messages(pb) for pb in lib.enabled):
        yield library_finding(
            lib,
            "no-referral-playbook",
            "no playbook thanks a customer who refers a friend",
            "add one with trigger: {event: referral}: welcome their friends, reward both",
        )
