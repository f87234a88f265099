"""The dependency graph: explicit and inferred edges, order, cycles."""

from pathlib import Path

from courtship.graph import PlaybookGraph
from courtship.validate import validate_paths

ROOT = Path(__file__).resolve().parents[1]


def test_inferred_edge_from_a_fact_set_to_a_fact_read():
    report = validate_paths([ROOT / "tests" / "examples" / "valid"])
    graph = PlaybookGraph(report.playbooks)
    kinds = {(e.source, e.target, e.kind, e.facts) for e in graph.edges()}
    assert ("yaml-traps", "follow-up", "sets", ("digest_sent_at",)) in kinds
    assert ("yaml-traps", "follow-up", "depends_on", ()) in kinds


def test_generations_put_dependencies_first_and_are_sorted():
    report = validate_paths([ROOT / "playbooks"])
    graph = PlaybookGraph(report.playbooks)
    generations = graph.generations()
    position = {pb: i for i, generation in enumerate(generations) for pb in generation}
    for edge in graph.edges():
        if edge.kind != "suppresses":
            assert position[edge.source] < position[edge.target], edge
    assert all(generation == sorted(generation) for generation in generations)
    assert sorted(graph.order()) == sorted(pb.id for pb in report.playbooks)


def test_bundled_library_has_no_cycle_and_covers_every_stage():
    report = validate_paths([ROOT / "playbooks"])
    assert PlaybookGraph(report.playbooks).cycles() == []
    stages = {pb.stage for pb in report.playbooks}
    assert stages == {
        "new",
        "onboarding",
        "active",
        "loyal",
        "at-risk",
        "lapsed",
        "churned",
        "advocate",
    }
