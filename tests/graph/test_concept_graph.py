"""ConceptGraph: structure queries, validation and serialisation."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from sae_causal_plugin.graph import ConceptGraph


def chain_graph() -> ConceptGraph:
    g = ConceptGraph()
    g.add_concept("animal", label="Animal", firing_count=100)
    g.add_edge("dog", "animal", count_child=10, p_parent_given_child=1.0, lift=2.5)
    g.add_edge("cat", "animal", p_parent_given_child=0.95)
    g.add_edge("puppy", "dog", p_parent_given_child=0.9)
    g.add_edge("dog", "pet", p_parent_given_child=0.92)
    return g


def test_structure_queries():
    g = chain_graph()
    assert len(g) == 5 and "dog" in g and "cow" not in g and 3 not in g
    assert set(g.parents("dog")) == {"animal", "pet"}
    assert set(g.children("animal")) == {"dog", "cat"}
    assert g.ancestors("puppy") == {"dog", "animal", "pet"}
    assert g.descendants("animal") == {"dog", "cat", "puppy"}
    assert g.edge_stats("dog", "animal")["lift"] == 2.5
    with pytest.raises(KeyError):
        g.edge_stats("animal", "dog")


def test_levels_computed_from_dag_and_stored_level_wins():
    g = chain_graph()
    assert g.levels() == {"animal": 0, "pet": 0, "dog": 1, "cat": 1, "puppy": 2}
    g.add_concept("cat", level=5)
    assert g.levels()["cat"] == 5


def test_self_loop_and_cycles_rejected():
    g = ConceptGraph()
    g.add_edge(1, 2)
    g.add_edge(2, 3)
    with pytest.raises(ValueError, match="self-loop"):
        g.add_edge(4, 4)
    with pytest.raises(ValueError, match="cycle"):
        g.add_edge(3, 1)
    with pytest.raises(ValueError, match="cycle"):
        g.add_edge(2, 1)
    assert g.edges == [(1, 2), (2, 3)]
    cyclic = nx.DiGraph([(1, 2), (2, 1)])
    with pytest.raises(ValueError, match="cycle"):
        ConceptGraph.from_networkx(cyclic)


def test_ids_must_be_int_or_str():
    g = ConceptGraph()
    with pytest.raises(TypeError):
        g.add_concept(1.5)
    with pytest.raises(TypeError):
        g.add_concept(True)


def test_json_round_trip_keeps_int_and_str_ids(tmp_path):
    g = ConceptGraph()
    g.add_concept(1, level=1, firing_count=7, extra={"tags": [1, 2]})
    g.add_concept("1", label="string one")
    g.add_edge("L1:12", "L0:3", count_both=4, p_parent_given_child=0.97)
    g.add_edge(1, "1", lift=3.0)
    g.add_edge(2, 1)
    g.meta["n_samples"] = 10
    path = tmp_path / "g.json"
    g.save_json(path)
    h = ConceptGraph.load_json(path)
    assert h == g
    assert set(h.concepts) == {1, "1", 2, "L1:12", "L0:3"}
    assert {type(n) for n in h.concepts} == {int, str}
    assert h.edge_stats(1, "1") == {"lift": 3.0}
    assert h.concept_attrs(1) == {"level": 1, "firing_count": 7, "extra": {"tags": [1, 2]}}
    assert h.meta == {"n_samples": 10}
    assert h.to_dict() == g.to_dict()
    raw = {(e["child"], e["parent"]) for e in json.loads(path.read_text())["edges"]}
    assert raw == {("L1:12", "L0:3"), (1, "1"), (2, 1)}


def test_equality_is_structural():
    a, b = chain_graph(), ConceptGraph()
    for c, p in a.edges:
        b.add_edge(c, p)
    b.add_concept("animal")
    assert a == b
    b.add_edge("kitten", "cat")
    assert a != b
    c = ConceptGraph()
    c.add_edge(1, 2)
    d = ConceptGraph()
    d.add_edge("1", "2")
    assert c != d


def test_networkx_round_trip_is_a_copy():
    g = chain_graph()
    nxg = g.to_networkx()
    nxg.add_edge("x", "y")
    assert "x" not in g
    h = ConceptGraph.from_networkx(g.to_networkx())
    assert h == g and h.edge_stats("dog", "animal") == g.edge_stats("dog", "animal")


def test_graphml_export(tmp_path):
    g = chain_graph()
    g.add_edge(7, "dog", p_parent_given_child=0.9)
    path = tmp_path / "g.graphml"
    g.to_graphml(path)
    back = nx.read_graphml(path)
    assert back.number_of_nodes() == len(g) and back.number_of_edges() == len(g.edges)
    assert back.nodes["7"]["id_type"] == "int"
    assert back.edges["dog", "animal"]["p_parent_given_child"] == 1.0


def test_dot_export(tmp_path):
    g = chain_graph()
    g.add_concept("cat", label='say "meow"')
    path = tmp_path / "g.dot"
    text = g.to_dot(path)
    assert path.read_text() == text
    assert text.startswith("digraph") and "rankdir=BT" in text
    assert text.count("->") == len(g.edges)
    assert 'say \\"meow\\"' in text
    assert "rank=same" in text
    import pydot

    (parsed,) = pydot.graph_from_dot_data(text)  # valid DOT: Graphviz's grammar reads it back
    labels = {n.get_label() for n in parsed.get_nodes()} | {
        n.get_label() for sub in parsed.get_subgraphs() for n in sub.get_nodes()}
    assert '"say \\"meow\\""' in labels
    assert len(parsed.get_edges()) == len(g.edges)


def test_draw_writes_png(tmp_path):
    g = chain_graph()
    path = tmp_path / "g.png"
    g.draw(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    big = ConceptGraph()
    for i in range(1, 60):
        big.add_edge(i, i // 3)
    small_path = tmp_path / "big.png"
    big.draw(small_path, max_nodes=20)
    assert small_path.stat().st_size > 2000
