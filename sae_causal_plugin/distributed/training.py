"""Data-parallel training of the hierarchical SAEs inside SAELens's own trainer.

:func:`data_parallel` wraps an SAE for the duration of a training run (``SAETrainer.fit()``, or a
SAELens runner) on each rank of a process group. Each rank feeds its own, equally sized part of
every global batch; the SAE then takes the step one process would take on the whole batch: the
losses are per-sample means, so the mean of the ranks' gradients is the global-batch gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sae_causal_plugin.distributed.group import reduce_over_ranks


class GlobalBatchTopK(nn.Module):
    """SAELens's ``BatchTopK`` over the global batch: keep the ``k x global rows`` largest activations.

    Every rank sends its own largest ``k x global rows`` activations; the smallest value kept over
    all ranks is the threshold each rank applies to its rows (ties at the threshold aside, the
    activations one process keeps on the whole batch).
    """

    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        acts = x.relu()
        flat = acts.flatten()
        rows = reduce_over_ranks(torch.tensor([acts.shape[:-1].numel()], device=x.device), "sum")
        keep = int(self.k * int(rows[0]))
        mine = torch.full((keep,), -1.0, dtype=flat.dtype, device=flat.device)
        top = torch.topk(flat.detach(), min(keep, flat.numel())).values
        mine[: top.numel()] = top
        every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(every, mine)
        threshold = torch.topk(torch.cat(every), keep).values[-1]
        return acts * (acts >= threshold)


@contextmanager
def data_parallel(sae: Any) -> Iterator[Any]:
    """Inside the block, ``sae`` trains on this rank's part of each global batch as one process on all of it.

    * every parameter and buffer starts as rank 0's (broadcast);
    * each gradient is averaged over the ranks as soon as backward has accumulated it, so SAELens's
      gradient clipping and optimiser step see the global-batch gradient on every rank;
    * a latent counts as fired (``revival_window``) when it fired on any rank;
    * BatchTopK keeps the top activations of the global batch (:class:`GlobalBatchTopK`) and its
      threshold follows the global minimum kept.

    Needs an initialised process group, a hierarchical SAE of this package with
    ``revival_window > 0`` (SAELens's trainer counts dead latents per rank), equally sized parts on
    every rank, and the same seed on every rank (the compression term samples its pairs). Only the
    caller decides which rank saves. Everything is undone when the block ends.
    """
    from sae_causal_plugin.saes.minimality import MinimalityMixin

    if not dist.is_initialized():
        raise ValueError("torch.distributed is not initialised; start with torchrun and use process_group()")
    if not isinstance(sae, MinimalityMixin):
        raise TypeError(f"data_parallel trains the hierarchical SAEs of sae_causal_plugin, got {type(sae).__name__}")
    if sae.cfg.revival_window <= 0:
        raise ValueError("data_parallel needs revival_window > 0, so dead latents are counted over all ranks; "
                         "set revival_window (default 50)")
    with torch.no_grad():
        for tensor in [*sae.parameters(), *sae.buffers()]:
            dist.broadcast(tensor.data, src=0)
    world = dist.get_world_size()

    def average(param: Tensor) -> None:
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad.div_(world)

    handles = [p.register_post_accumulate_grad_hook(average) for p in sae.parameters() if p.requires_grad]
    activation = sae.activation_fn
    if type(activation).__name__ == "BatchTopK":
        sae.activation_fn = GlobalBatchTopK(activation.k)
    sae.rank_reduce = reduce_over_ranks
    try:
        yield sae
    finally:
        for handle in handles:
            handle.remove()
        sae.activation_fn = activation
        sae.rank_reduce = None
