"""Several processes (``torchrun``): sharded graph statistics and data-parallel SAE training.

* :func:`process_group`, :class:`ProcessGroupShards`, :func:`shard_slice`: the graph
  statistics of :func:`~sae_causal_plugin.graph.recover_concept_graph` over shards of the
  activation stream, reduced on rank 0 (``docs/scaling.md``).
* :func:`data_parallel`: a hierarchical SAE trained by SAELens's trainer on each rank's part of
  every global batch, equal to one process on the whole batch.
"""

from sae_causal_plugin.distributed.group import (
    DEFAULT_TIMEOUT_S,
    ProcessGroupShards,
    RankFailed,
    launched_by_torchrun,
    process_group,
    shard_slice,
)
from sae_causal_plugin.distributed.training import GlobalBatchTopK, data_parallel

__all__ = ["DEFAULT_TIMEOUT_S", "GlobalBatchTopK", "ProcessGroupShards", "RankFailed", "data_parallel",
           "launched_by_torchrun", "process_group", "shard_slice"]
