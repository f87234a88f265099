"""The dependency graph as inline SVG, laid out in evaluation order (no Graphviz needed).

Each generation of ``PlaybookGraph.generations()`` is a column, left to right; an edge runs from
a dependency to its dependent: ``depends_on`` black, a fact set → read blue, a suppression
dashed grey.
"""

from __future__ import annotations

from html import escape
from typing import Any

from courtship.graph import DEPENDS, SETS

WIDTH, HEIGHT = 200, 44
GAP_X, GAP_Y = 56, 18
PAD = 20
COLOURS = {DEPENDS: "#333333", SETS: "#1f66c1"}


def graph_svg(graph: Any) -> str:
    """``graph``: a ``PlaybookGraph``. An SVG element sized to the drawing."""
    columns = graph.generations() or [[]]
    place: dict[str, tuple[float, float]] = {}
    for x, generation in enumerate(columns):
        for y, pb_id in enumerate(generation):
            place[pb_id] = (PAD + x * (WIDTH + GAP_X), PAD + y * (HEIGHT + GAP_Y))
    tallest = max(len(c) for c in columns)
    width = PAD * 2 + len(columns) * (WIDTH + GAP_X) - GAP_X
    height = PAD * 2 + max(tallest, 1) * (HEIGHT + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="dependency graph" '
        'font-family="system-ui, sans-serif" font-size="12">',
        "<defs>",
        *(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="10" refY="5" '
            f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for name, colour in (("depends", "#333333"), ("sets", "#1f66c1"), ("sup", "#888888"))
        ),
        "</defs>",
    ]
    for edge in graph.edges():
        if edge.source not in place or edge.target not in place:
            continue
        (x1, y1), (x2, y2) = place[edge.source], place[edge.target]
        start = (x1 + WIDTH, y1 + HEIGHT / 2) if x2 > x1 else (x1 + WIDTH / 2, y1 + HEIGHT)
        end = (x2, y2 + HEIGHT / 2) if x2 > x1 else (x2 + WIDTH / 2, y2)
        if edge.kind == DEPENDS:
            style, marker = f'stroke="{COLOURS[DEPENDS]}"', "depends"
        elif edge.kind == SETS:
            style, marker = f'stroke="{COLOURS[SETS]}"', "sets"
        else:
            style, marker = 'stroke="#888888" stroke-dasharray="5,4"', "sup"
        title = escape(edge.describe())
        parts.append(
            f'<line x1="{start[0]:.0f}" y1="{start[1]:.0f}" x2="{end[0]:.0f}" y2="{end[1]:.0f}" '
            f'{style} stroke-width="1.5" marker-end="url(#arrow-{marker})">'
            f"<title>{title}</title></line>"
        )
    for pb_id, (x, y) in sorted(place.items()):
        pb = graph.playbooks[pb_id]
        parts.append(
            f'<g><title>{escape(pb_id)}</title><rect x="{x:.0f}" y="{y:.0f}" width="{WIDTH}" '
            f'height="{HEIGHT}" rx="8" fill="#f4f7fb" stroke="#6b7a90"/>'
            f'<text x="{x + 10:.0f}" y="{y + 18:.0f}" font-weight="600">{escape(pb_id)}</text>'
            f'<text x="{x + 10:.0f}" y="{y + 34:.0f}" fill="#555">'
            f"{escape(f'{pb.stage} · {pb.category}')}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
