"""Several processes (``torchrun``): sharded graph statistics and data-parallel SAE training.

* :func:`process_group`, :class:`ProcessGroupShards`, :func:`shard_slice`: the graph
  statistics of :func:`~sae_causal_plugin.graph.recover_concept_graph` over shards of the
  activation stream, reduced on rank 0 (``docs/scaling.md``).
"""

from sae_causal_plugin.distributed.group import (
    DEFAULT_TIMEOUT_S,
    ProcessGroupShards,
    RankFailed,
    launched_by_torchrun,
    process_group,
    shard_slice,
)

__all__ = ["DEFAULT_TIMEOUT_S", "ProcessGroupShards", "RankFailed", "launched_by_torchrun", "process_group",
           "shard_slice"]
