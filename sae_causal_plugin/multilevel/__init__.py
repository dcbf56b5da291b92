"""Multi-level SAEs: one SAE per level (timestep, layer), trained jointly, and the graph between them.

* :func:`make_level_saes`, :class:`MultiLevelTrainer`, :func:`train_level_saes`: joint training
  on paired activations with SAELens's ``MultiSAETrainer``; cross-level terms in
  :class:`CrossLevelConfig` (``CrossLevelConfig().independent()``: the independent baseline).
* :func:`save_multilevel` / :func:`load_multilevel`: stock SAELens SAE per level plus the
  learned selection maps beside them.
* :func:`recover_layered_graph`: minimal-parent concept graph across levels (CI tests, rule in
  :mod:`sae_causal_plugin.graph.layered`).
* :func:`level_mcc`, :func:`edge_scores`, :func:`edge_jaccard`: evaluation against a known world;
  :func:`layered_diagnosis` (with :func:`merged_latents`): the dictionary's and the graph step's
  share of the errors.
"""

from sae_causal_plugin.multilevel.data import check_levels, encode_fired, to_rows
from sae_causal_plugin.multilevel.evaluation import (
    edge_jaccard,
    edge_scores,
    layered_diagnosis,
    level_mcc,
    match_latents,
    merged_latents,
)
from sae_causal_plugin.multilevel.losses import cross_level_consistency_loss, cross_level_fit_loss
from sae_causal_plugin.multilevel.recovery import recover_layered_graph
from sae_causal_plugin.multilevel.sae import (
    CrossLevelBatchTopKTrainingSAE,
    CrossLevelConfig,
    CrossLevelJumpReLUTrainingSAE,
    CrossLevelMixin,
    CrossLevelTopKTrainingSAE,
    LevelContext,
)
from sae_causal_plugin.multilevel.training import (
    MultiLevelTrainer,
    init_from_data,
    load_multilevel,
    make_level_saes,
    save_multilevel,
    train_level_saes,
    trainer_config,
)

__all__ = [
    "CrossLevelBatchTopKTrainingSAE",
    "CrossLevelConfig",
    "CrossLevelJumpReLUTrainingSAE",
    "CrossLevelMixin",
    "CrossLevelTopKTrainingSAE",
    "LevelContext",
    "MultiLevelTrainer",
    "check_levels",
    "cross_level_consistency_loss",
    "cross_level_fit_loss",
    "edge_jaccard",
    "edge_scores",
    "encode_fired",
    "init_from_data",
    "layered_diagnosis",
    "level_mcc",
    "load_multilevel",
    "make_level_saes",
    "match_latents",
    "merged_latents",
    "recover_layered_graph",
    "save_multilevel",
    "to_rows",
    "train_level_saes",
    "trainer_config",
]
