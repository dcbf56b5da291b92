import pytest

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.worlds.run import SteeringExample, WorldRun


def taxonomy(edges, labels=None):
    graph = ConceptGraph()
    for child, parent in edges:
        graph.add_edge(child, parent, p_parent_given_child=0.95)
    for node, label in (labels or {}).items():
        graph.add_concept(node, label=label)
    return graph


@pytest.fixture
def tiny_run():
    true = taxonomy([("dog", "animal"), ("cat", "animal"), ("oak", "plant"), ("rose", "plant")])
    learned = taxonomy([(3, 0), (4, 0), (5, 1), (6, 3)],
                       labels={0: "animal", 1: "plant", 3: "dog", 4: "cat", 5: "oak", 6: "puppy"})
    return WorldRun(
        world="language",
        learned_graph=learned,
        true_graph=true,
        metrics={"edge_f1": 0.75, "steer_mass_ratio": 6.5, "ppl_increase": 0.04,
                 "ablation_mass_fraction": 0.2, "seconds": 12.0, "n_tokens": 4096,
                 "per_category": {"animal": {"mass_ratio": 7.5, "matched": 1.0},
                                  "plant": {"mass_ratio": 5.6, "matched": 1.0}}},
        steering_examples=[SteeringExample(
            title="steer toward animal", before="I saw a <rose>", after="I saw a <dog>",
            note="clamp latent 0 to 8", table=[{"category": "animal", "before": 0.1, "after": 0.7}])],
        description="tiny hand-built run",
    )
