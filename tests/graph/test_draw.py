"""The layered pictures: labelled rows, no overlapping labels, isolated concepts in the legend, an
interactive page that works offline."""

from __future__ import annotations

import itertools

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph._draw import figure, layout


def wide_graph() -> ConceptGraph:
    """3 timesteps; 70 fine concepts with long names under 10 coarser ones; two concepts on no edge."""
    g = ConceptGraph()
    for i in range(3):
        g.add_concept(f"coarse {i}", timestep=901, level=0)
    for i in range(10):
        g.add_concept(f"middle concept {i}", timestep=501, level=1)
        g.add_edge(f"middle concept {i}", f"coarse {i % 3}")
    for i in range(70):
        g.add_concept(f"a fine concept number {i}", timestep=101, level=2)
        g.add_edge(f"a fine concept number {i}", f"middle concept {i % 10}", p_parent_given_child=0.9)
    g.add_concept("lonely", timestep=101, level=2)
    g.add_concept(7, level=2)
    return g


def test_rows_are_labelled_by_timestep_and_isolated_concepts_go_to_the_legend():
    lay = layout(wide_graph())
    assert [label for label, _ in lay.rows] == ["t = 901", "t = 501", "t = 101"]
    assert "lonely" not in lay.pos and 7 not in lay.pos
    assert sorted(lay.isolated) == ["#7", "lonely"]
    assert any("On no edge (2" in line for line in lay.legend)
    assert len(lay.pos) == 83


def test_rows_fall_back_to_layer_then_level():
    g = ConceptGraph()
    g.add_concept("a", layer=0)
    g.add_concept("b", layer=1)
    g.add_edge("b", "a")
    assert [label for label, _ in layout(g).rows] == ["layer 0", "layer 1"]
    g = ConceptGraph()
    g.add_edge(1, 0)
    lay = layout(g)
    assert [label for label, _ in lay.rows] == ["level 0", "level 1"]
    assert lay.labels == {0: "#0", 1: "#1"}
    assert any(line.startswith("#i = SAE latent i") for line in lay.legend)


def test_no_two_node_labels_overlap_and_the_picture_is_bounded():
    fig = figure(wide_graph(), title="a long title " * 30)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts if t.get_gid() == "node"]
    assert len(boxes) == 83
    overlapping = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    assert not overlapping, f"{len(overlapping)} overlapping label pairs"
    width, height = fig.get_size_inches()
    assert width <= 30.0
    # every label and the (wrapped) title lie inside the picture
    canvas = fig.bbox
    for t in fig.axes[0].texts:
        box = t.get_window_extent(renderer)
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1, t.get_text()[:40]


def test_every_node_carries_its_label():
    g = wide_graph()
    lay = layout(g)
    assert all(lay.labels[n] == (str(n) if not isinstance(n, int) else f"#{n}") for n in lay.pos)
    g.add_concept("coarse 0", label="the first coarse one", timestep=901, level=0)
    assert layout(g).labels["coarse 0"] == "the first coarse one"


def test_interactive_page_is_standalone_and_holds_every_concept(tmp_path):
    g = wide_graph()
    path = tmp_path / "graph.html"
    g.draw_html(path, title="wide")
    html = path.read_text(encoding="utf-8")
    assert "<script src=" not in html  # plotly's script is inlined: the page works offline
    assert "Plotly.newPlot" in html
    for n in g.concepts:
        if n not in ("lonely", 7):
            assert str(n) in html
    assert "t = 101" in html and "parents: middle concept 3" in html
