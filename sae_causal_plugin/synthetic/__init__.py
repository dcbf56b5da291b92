"""Synthetic multi-level worlds with a known hierarchical selection DAG.

* :class:`HierarchicalSelectionModel` / :class:`HierarchicalSelectionConfig`: concepts on levels
  ``0..L`` (0 = most abstract), each coarse concept a deterministic OR / AND / threshold
  selection of a few finer ones, one observation space per level, paired samples.
* :func:`compose`: the selection rules as a pure function.
"""

from sae_causal_plugin.synthetic.compositions import COMPOSITIONS, compose, relevant_components
from sae_causal_plugin.synthetic.config import HierarchicalSelectionConfig
from sae_causal_plugin.synthetic.model import (
    HierarchicalSelectionModel,
    MultiLevelSample,
    zipf_probabilities,
)

__all__ = [
    "COMPOSITIONS",
    "HierarchicalSelectionConfig",
    "HierarchicalSelectionModel",
    "MultiLevelSample",
    "compose",
    "relevant_components",
    "zipf_probabilities",
]
