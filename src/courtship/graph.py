"""The dependency graph between playbooks.

Edges run from a dependency to its dependent, the way evaluation flows::

    welcome ──depends_on──▶ onboarding-nudge        (onboarding-nudge lists welcome in depends_on)
    lapsed  ──sets lapse_reached_out_at──▶ win-back  (win-back reads a fact lapsed sets)
    win-back ┈┈suppresses┈┈▶ weekly-digest           (ordering only: a winner is known first)

``depends_on`` and inferred fact edges decide the order; a cycle among them is an error.
Suppression edges order evaluation too when they do not close a cycle; they are drawn dotted.
"""

from __future__ import annotations

import graphlib
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # networkx is imported by the first graph built, not by a validation
    import networkx as nx

    from courtship.playbook import Playbook

DEPENDS = "depends_on"
SETS = "sets"
SUPPRESSES = "suppresses"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    facts: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == DEPENDS:
            return f"{self.target} depends_on {self.source}"
        if self.kind == SETS:
            return f"{self.target} reads {', '.join(self.facts)} set by {self.source}"
        return f"{self.source} suppresses {self.target}"


class Linked(Protocol):
    """What the graph reads of a playbook: a :class:`~courtship.playbook.Playbook`, or the
    summary of one that validation keeps (``courtship.validate.PlaybookSummary``)."""

    @property
    def id(self) -> str: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def suppresses(self) -> Sequence[str]: ...
    @property
    def facts_read(self) -> Mapping[str, Any]: ...
    @property
    def facts_set(self) -> Mapping[str, Any]: ...


def _links(playbooks: Mapping[str, Linked]) -> Iterable[tuple[str, str, str, str | None]]:
    """Every edge (source, target, kind, fact) between ``playbooks`` (id → playbook)."""
    setters: dict[str, list[str]] = {}
    for pb in playbooks.values():
        for fact in pb.facts_set:
            setters.setdefault(fact, []).append(pb.id)
    for pb in playbooks.values():
        for dependency in pb.depends_on:
            if dependency in playbooks:
                yield dependency, pb.id, DEPENDS, None
        for fact in pb.facts_read:
            for setter in setters.get(fact, []):
                if setter != pb.id:
                    yield setter, pb.id, SETS, fact
        for target in pb.suppresses:
            if target in playbooks and target != pb.id:
                yield pb.id, target, SUPPRESSES, None


def has_cycle(playbooks: Iterable[Linked]) -> bool:
    """Whether depends_on and facts set → read close a loop among ``playbooks`` (the edges
    :meth:`PlaybookGraph.cycles` follows), told by the standard library's topological sort:
    a validation imports networkx only to name the cycles there are."""
    by_id = {pb.id: pb for pb in playbooks}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for pb_id in by_id:
        sorter.add(pb_id)
    for source, target, kind, _ in _links(by_id):
        if kind != SUPPRESSES:
            sorter.add(target, source)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return True
    return False


class PlaybookGraph:
    """A thin layer over ``nx.DiGraph`` with playbook ids as nodes."""

    def __init__(self, playbooks: Iterable[Playbook]) -> None:
        import networkx as nx

        self.playbooks = {pb.id: pb for pb in playbooks}
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(sorted(self.playbooks))
        for source, target, kind, fact in _links(self.playbooks):
            self._add(source, target, kind, fact)

    def _add(self, source: str, target: str, kind: str, fact: str | None = None) -> None:
        data = self.graph.get_edge_data(source, target)
        if data is None:
            self.graph.add_edge(source, target, kinds={kind}, facts=set())
            data = self.graph.edges[source, target]
        data["kinds"].add(kind)
        if fact:
            data["facts"].add(fact)

    # ── reading the graph ─────────────────────────────────────────────────
    def edges(self) -> list[Edge]:
        out = []
        for source, target, data in sorted(self.graph.edges(data=True)):
            for kind in sorted(data["kinds"]):
                facts = tuple(sorted(data["facts"])) if kind == SETS else ()
                out.append(Edge(source, target, kind, facts))
        return out

    def ordering_graph(self) -> nx.DiGraph:
        """Only the edges that must hold: depends_on and facts set → read."""
        import networkx as nx

        keep = [
            (s, t) for s, t, data in self.graph.edges(data=True) if data["kinds"] - {SUPPRESSES}
        ]
        graph = nx.DiGraph()
        graph.add_nodes_from(self.graph.nodes)
        graph.add_edges_from(keep)
        return graph

    def cycles(self) -> list[list[str]]:
        """One cycle per tangle of mutually dependent playbooks, each as ids in order."""
        import networkx as nx

        ordering = self.ordering_graph()
        found = []
        for component in nx.strongly_connected_components(ordering):
            sub = ordering.subgraph(component)
            if len(component) == 1 and not sub.has_edge(*(2 * list(component))):
                continue
            start = min(component)
            edges = nx.find_cycle(sub, source=start)
            found.append([source for source, _ in edges] + [start])
        return sorted(found)

    def generations(self) -> list[list[str]]:
        """Playbooks in evaluation order: each generation depends only on earlier ones."""
        import networkx as nx

        ordering = self.ordering_graph()
        graph = ordering.copy()
        # Suppression also orders, where it can without a cycle: the suppressor goes first.
        for source, target, data in self.graph.edges(data=True):
            if SUPPRESSES in data["kinds"] and not graph.has_edge(source, target):
                graph.add_edge(source, target)
                if not nx.is_directed_acyclic_graph(graph):
                    graph.remove_edge(source, target)
        return [sorted(generation) for generation in nx.topological_generations(graph)]

    def order(self) -> list[str]:
        return [pb for generation in self.generations() for pb in generation]

    # ── drawing ───────────────────────────────────────────────────────────
    def to_mermaid(self) -> str:
        lines = ["flowchart LR"]
        for pb_id in sorted(self.playbooks):
            pb = self.playbooks[pb_id]
            label = f"{pb.id}<br/><small>{pb.stage} · {pb.category}</small>"
            lines.append(f'    {_node(pb_id)}["{label}"]')
        for edge in self.edges():
            source, target = _node(edge.source), _node(edge.target)
            if edge.kind == DEPENDS:
                lines.append(f"    {source} --> {target}")
            elif edge.kind == SETS:
                lines.append(f'    {source} -- "sets {", ".join(edge.facts)}" --> {target}')
            else:
                lines.append(f"    {source} -. suppresses .-> {target}")
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        lines = ["digraph playbooks {", "    rankdir=LR;", "    node [shape=box, style=rounded];"]
        for pb_id in sorted(self.playbooks):
            pb = self.playbooks[pb_id]
            lines.append(f'    "{pb_id}" [label="{pb_id}\\n{pb.stage} · {pb.category}"];')
        for edge in self.edges():
            if edge.kind == DEPENDS:
                attrs = 'label="depends_on"'
            elif edge.kind == SETS:
                attrs = f'label="sets {", ".join(edge.facts)}", color="blue"'
            else:
                attrs = 'label="suppresses", style=dashed, color="gray40"'
            lines.append(f'    "{edge.source}" -> "{edge.target}" [{attrs}];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_svg(self) -> str:
        """SVG drawn by Graphviz's ``dot``; ``FileNotFoundError`` when it is not installed."""
        dot = shutil.which("dot")
        if dot is None:
            raise FileNotFoundError("dot")
        result = subprocess.run(
            [dot, "-Tsvg"], input=self.to_dot(), capture_output=True, text=True, check=True
        )
        return result.stdout


def _node(pb_id: str) -> str:
    """Mermaid node ids cannot hold every character a playbook id may; hyphens become _."""
    return pb_id.replace("-", "_")
