"""Joint training of one SAE per level on paired activations, with SAELens's ``MultiSAETrainer``.

SAELens's ``MultiSAETrainer`` holds one ``SAETrainer`` per SAE (own optimiser, schedulers,
dead-latent tracking) and steps them in turn on a shared multi-hook batch. Before each step the
paired batch is put into the levels' shared :class:`~.sae.LevelContext`, from which each level's
cross-level terms read the other levels' codes for the same inputs. With
:meth:`CrossLevelConfig.independent` the very same loop trains independent SAEs (the baseline).

Saved layout (:func:`save_multilevel`)::

    path/multilevel.json                 levels, widths, where each map lives
    path/level_0/cfg.json, sae_weights.safetensors      (stock SAELens SAE)
    path/level_0/cross_level_selection.safetensors      (map level 1 -> level 0)
    path/level_1/...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from sae_lens import SAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.training.multi_sae_trainer import MultiSAETrainer
from torch import Tensor

from sae_causal_plugin._quiet import quiet_saelens
from sae_causal_plugin.multilevel.data import check_levels, to_rows
from sae_causal_plugin.multilevel.sae import (
    CROSS_LEVEL_CLASSES,
    SELECTION_FILENAME,
    CrossLevelConfig,
    CrossLevelMixin,
    LevelContext,
)

MANIFEST = "multilevel.json"


def level_name(level: int) -> str:
    return f"level_{level}"


def make_level_saes(level_cfgs: Sequence[Any], cross: CrossLevelConfig | None = None) -> list[Any]:
    """One cross-level training SAE per config (level 0 first), linked finest -> coarsest.

    Args:
        level_cfgs: SAELens ``BatchTopKTrainingSAEConfig``, ``TopKTrainingSAEConfig`` or
            ``JumpReLUTrainingSAEConfig`` per level.
        cross: the cross-level coefficients (default :class:`CrossLevelConfig`); use
            ``CrossLevelConfig().independent()`` for the baseline.
    """
    if len(level_cfgs) < 2:
        raise ValueError(f"level_cfgs has {len(level_cfgs)} config(s); joint training needs at least two levels.")
    cross = cross if cross is not None else CrossLevelConfig()
    widths = [int(cfg.d_sae) for cfg in level_cfgs]
    saes = []
    for level, cfg in enumerate(level_cfgs):
        cls = CROSS_LEVEL_CLASSES.get(cfg.architecture())
        if cls is None:
            raise ValueError(
                f"level_cfgs[{level}] has architecture {cfg.architecture()!r}; use one of "
                f"{', '.join(CROSS_LEVEL_CLASSES)} (SAELens training configs)."
            )
        saes.append(cls(cfg, cross=cross, level=level, level_d_sae=widths))
    context = LevelContext(saes)
    for sae in saes:
        sae.context = context
    return saes


class _PairedProvider(Iterator[dict[str, Tensor]]):
    """Turn paired batches (lists of per-level tensors, any layout) into SAELens multi-hook dicts."""

    def __init__(self, batches: Iterable[Sequence[Tensor]], saes: Sequence[Any], first: Sequence[Tensor]):
        self._it = chain([first], iter(batches))
        self._saes = saes

    def __next__(self) -> dict[str, Tensor]:
        batch = next(self._it)
        if isinstance(batch, dict):
            batch = [batch[level_name(level)] for level in range(len(self._saes))]
        check_levels(self._saes, batch, names=("level_saes", "data batch"))
        rows = [to_rows(x) for x in batch]
        context = self._saes[0].context
        if context is not None:
            context.set_batch(rows)
        return {level_name(level): r for level, r in enumerate(rows)}


class MultiLevelTrainer:
    """Train per-level SAEs jointly (SAELens ``MultiSAETrainer``, finest level stepping first).

    Args:
        level_saes: from :func:`make_level_saes`, level 0 first.
        data: iterable of paired batches: a list with one tensor per level (``[n, d_l]``,
            ``[batch, positions, d_l]`` or ``[batch, d_l, h, w]``), or a dict ``{"level_l": x}``.
        cfg: SAELens ``SAETrainerConfig`` shared by all levels.

    Raises:
        ValueError: before any training, when the first batch does not pair up or does not fit
            the SAEs (see :func:`~sae_causal_plugin.multilevel.data.check_levels`).
    """

    def __init__(self, level_saes: Sequence[Any], data: Iterable[Sequence[Tensor]], cfg: SAETrainerConfig):
        if len(level_saes) < 2:
            raise ValueError(f"level_saes has {len(level_saes)} SAE(s); joint training needs at least two levels.")
        for level, sae in enumerate(level_saes):
            if not isinstance(sae, CrossLevelMixin):
                raise ValueError(f"level_saes[{level}] is a {type(sae).__name__}; build the SAEs with make_level_saes.")
            if sae.cfg.normalize_activations not in ("none",):
                raise ValueError(
                    f"level_saes[{level}] uses normalize_activations={sae.cfg.normalize_activations!r}; "
                    "joint training compares firing across levels batch by batch, use 'none'."
                )
        iterator = iter(data)
        first = next(iterator)
        if isinstance(first, dict):
            first = [first[level_name(level)] for level in range(len(level_saes))]
        check_levels(level_saes, first, names=("level_saes", "data batch"))
        self.level_saes = list(level_saes)
        names = [level_name(level) for level in reversed(range(len(level_saes)))]
        for sae in level_saes:
            sae.resample_until = int(sae.cross.resample_stop * cfg.total_training_steps)
            sae.total_steps = int(cfg.total_training_steps)
        self.trainer = MultiSAETrainer(
            cfg=cfg,
            saes={name: level_saes[int(name.split("_")[1])] for name in names},
            hook_names={name: name for name in names},
            data_provider=_PairedProvider(iterator, level_saes, first),
        )

    def fit(self, progress: bool = True) -> list[Any]:
        """Train; returns the SAEs, level 0 first (``progress=False``: no tqdm bar)."""
        with nullcontext() if progress else quiet_saelens(level=None):
            self.trainer.fit()
        return self.level_saes


def trainer_config(total_samples: int, batch_size: int, lr: float = 3e-3, device: str = "cpu",
                   decay_fraction: float = 0.3, **kwargs: Any) -> SAETrainerConfig:
    """A SAELens ``SAETrainerConfig`` for short synthetic runs (no wandb, no checkpoints): constant
    learning rate, linearly decayed to 0 over the last ``decay_fraction`` of the steps."""
    steps = total_samples // batch_size
    return SAETrainerConfig(
        total_training_samples=total_samples, train_batch_size_samples=batch_size, lr=lr, lr_end=lr,
        lr_decay_steps=kwargs.pop("lr_decay_steps", int(decay_fraction * steps)),
        device=device, dead_feature_window=kwargs.pop("dead_feature_window", 200),
        feature_sampling_window=kwargs.pop("feature_sampling_window", 1000),
        logger=LoggingConfig(log_to_wandb=False), **kwargs)


def save_multilevel(level_saes: Sequence[Any], path: str | Path) -> Path:
    """Save every level as a stock SAELens SAE (``level_l/``) plus the selection maps beside them."""
    from sae_causal_plugin._files import staged_dir

    path = Path(path)
    entries = []
    with staged_dir(path, what="multi-level SAE folder") as stage:  # the manifest and levels appear together
        for level, sae in enumerate(level_saes):
            sae.save_inference_model(stage / level_name(level))
            has_map = getattr(sae, "cross_selection_logits", None) is not None
            entries.append({"dir": level_name(level), "d_in": int(sae.cfg.d_in), "d_sae": int(sae.cfg.d_sae),
                            "selection_map": f"{level_name(level)}/{SELECTION_FILENAME}" if has_map else None})
        (stage / MANIFEST).write_text(json.dumps({"format": "sae_causal_plugin.multilevel", "version": 1,
                                                  "levels": entries}, indent=1))
    return path


def load_multilevel(path: str | Path, device: str = "cpu") -> tuple[list[SAE[Any]], list[Tensor | None]]:
    """Inverse of :func:`save_multilevel`: SAELens inference SAEs and the selection maps
    (``maps[l]`` is ``[d_sae_{l+1}, d_sae_l]``, ``None`` for the finest level or the baseline)."""
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise ValueError(f"{path} holds no {MANIFEST}; pass a directory written by save_multilevel().")
    manifest = json.loads((path / MANIFEST).read_text())
    saes, maps = [], []
    for entry in manifest["levels"]:
        saes.append(SAE.load_from_disk(str(path / entry["dir"]), device=device))
        rel = entry["selection_map"]
        maps.append(load_file(str(path / rel))["selection"].to(device) if rel else None)
    return saes, maps


def train_level_saes(level_saes: Sequence[Any], batches: Iterable[Sequence[Tensor]], *, total_samples: int,
                     batch_size: int, lr: float = 3e-3, device: str = "cpu", init_rows: Sequence[Tensor] | None = None,
                     seed: int = 0, progress: bool = True, **trainer_kwargs: Any) -> list[Any]:
    """Convenience: :class:`MultiLevelTrainer` with :func:`trainer_config`.

    ``init_rows`` (one ``[n, d_l]`` tensor per level) switches on :func:`init_from_data`.
    """
    cfg = trainer_config(total_samples, batch_size, lr=lr, device=device, **trainer_kwargs)
    trainer = MultiLevelTrainer(level_saes, batches, cfg)
    if init_rows is not None:
        check_levels(level_saes, list(init_rows), names=("level_saes", "init_rows"))
        for level, (sae, rows) in enumerate(zip(level_saes, init_rows)):
            init_from_data(sae, to_rows(rows), seed=seed * 101 + level)
    return trainer.fit(progress=progress)


@torch.no_grad()
def init_from_data(sae: Any, rows: Tensor, seed: int = 0, max_rows: int = 4096, same: float = 0.9,
                   distinct: float = 0.7) -> None:
    """Data-dependent initialisation: decoder rows = the densest distinct activation directions.

    With sparse codes many activation rows hold a single concept, so the directions shared by
    many rows (``|cos| >= same``) are the dictionary's; mixtures of several concepts with random
    magnitudes are spread out and rarely repeat. Rows are taken greedily by that density, each
    suppressing the rows within ``|cos| >= distinct`` of it (non-maximum suppression); when
    fewer than ``d_sae`` directions survive, the rest is filled by farthest-point selection.
    ``W_enc = W_dec.T`` (unit rows), ``b_enc = b_dec = 0``. No latent starts where the data
    never is (dead at birth), and both methods of the benchmark share it.
    """
    rows = rows.detach().float().to(sae.W_dec.device)
    norms = rows.norm(dim=-1)
    rows = rows[norms > 1e-3 * norms.max().clamp_min(1e-12)]
    d_sae = sae.cfg.d_sae
    if rows.shape[0] < d_sae:
        raise ValueError(f"init_from_data needs at least d_sae={d_sae} non-zero rows, got {rows.shape[0]}.")
    g = torch.Generator().manual_seed(seed)
    unit = rows[torch.randperm(rows.shape[0], generator=g)[:max_rows].to(rows.device)]
    unit = unit / unit.norm(dim=-1, keepdim=True)
    cos = (unit @ unit.T).abs()
    density = (cos >= same).sum(dim=1).double() + 1e-3 * torch.rand(unit.shape[0], generator=g, dtype=torch.float64)
    open_ = torch.ones(unit.shape[0], dtype=torch.bool)
    chosen: list[int] = []
    while len(chosen) < d_sae and bool(open_.any()):
        best = int(torch.argmax(torch.where(open_, density, torch.tensor(-1.0, dtype=torch.float64))))
        chosen.append(best)
        open_ &= cos[best] < distinct
    closeness = cos[chosen].max(dim=0).values if chosen else torch.zeros(unit.shape[0])
    while len(chosen) < d_sae:
        nxt = int(torch.argmin(closeness))
        chosen.append(nxt)
        closeness = torch.maximum(closeness, cos[nxt])
    W = unit[chosen].to(sae.W_dec.dtype)
    sae.W_dec.data.copy_(W)
    sae.W_enc.data.copy_(W.T)
    sae.b_enc.data.zero_()
    sae.b_dec.data.zero_()
