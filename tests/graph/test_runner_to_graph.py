"""End to end at tiny size: SAELens's SyntheticSAERunner trains our SAE, and the saved SAE goes
through the factorisation, both graphs and the diagnosis (issue: the path a researcher takes)."""

import torch
from sae_lens import SAE, LoggingConfig
from sae_lens.synthetic import HierarchyConfig, SyntheticModelConfig
from sae_lens.synthetic.synthetic_sae_runner import SyntheticSAERunner, SyntheticSAERunnerConfig

from sae_causal_plugin import (
    HierarchicalBatchTopKTrainingSAEConfig,
    SelectionCode,
    diagnose_hierarchy,
    factorize_decoder,
    recover_concept_graph,
)


def test_synthetic_runner_sae_is_factorised_recovered_and_diagnosed(tmp_path):
    cfg = SyntheticSAERunnerConfig(
        synthetic_model=SyntheticModelConfig(
            num_features=32, hidden_dim=16, seed=0, bias=False,
            hierarchy=HierarchyConfig(total_root_nodes=4, branching_factor=2, max_depth=1)),
        sae=HierarchicalBatchTopKTrainingSAEConfig(d_in=16, d_sae=32, k=3),
        training_samples=60_000, batch_size=500, lr=1e-2, eval_samples=2_000,
        output_path=str(tmp_path / "sae"), logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=5,
    )
    result = SyntheticSAERunner(cfg).run()
    sae = SAE.load_from_disk(tmp_path / "sae")  # what a researcher has after the run
    model = result.synthetic_model
    acts = model.sample(8192)

    code = factorize_decoder(sae, acts)
    with torch.no_grad():
        x = acts[:512]
        relative = (code.decode(code.encode(x)) - sae.decode(sae.encode(x))).norm() / sae.decode(
            sae.encode(x)).norm()
    assert relative < 1e-5
    code.save(tmp_path / "code")
    again = SelectionCode.load(tmp_path / "code", sae)
    assert torch.equal(again.children, code.children) and torch.equal(again.parents, code.parents)

    factorised = recover_concept_graph(sae, acts, selection_code=code)
    plain = recover_concept_graph(sae, acts, evidence="cofiring")
    assert factorised.meta["evidence"] == "factorised" and plain.meta["evidence"] == "cofiring"
    for graph in (factorised, plain):
        assert set(graph.concepts) <= set(range(32))
        diagnosis = diagnose_hierarchy(graph, sae, model, code=code, num_samples=4096,
                                       print_report=False)
        assert diagnosis.n_true_edges == 8  # 4 roots x 2 children
        assert diagnosis.n_recovered_edges == len(graph.edges)
        assert sum(diagnosis.wrong_edges.values()) == (
            diagnosis.n_recovered_edges - diagnosis.n_correct_edges)
        assert diagnosis.absorption_factorised is not None
