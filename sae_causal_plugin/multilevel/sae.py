"""Per-level training SAEs that carry the cross-level minimality terms (SAELens glue).

:class:`CrossLevelMixin` is put in front of SAELens's ``BatchTopKTrainingSAE``,
``TopKTrainingSAE`` or ``JumpReLUTrainingSAE`` (configs: SAELens's own
``BatchTopKTrainingSAEConfig`` etc.; inference SAEs are saved as stock ``jumprelu`` / ``topk``).
The within-level minimality terms of :mod:`sae_causal_plugin.saes` are not mixed in: in a
multi-level world the hierarchy runs *between* the levels' SAEs.

All levels share a :class:`LevelContext` holding the current paired batch; during its own
SAELens step a level reads the other levels' codes for that batch from it (computed without
gradient). Cross-level terms of level ``l``, each an entry of SAELens's ``losses`` dict:

* ``cross_selection_loss`` / ``cross_selection_fit_loss`` / ``cross_graph_sparsity_loss``
  (coarse levels only): a learned non-negative selection map ``S`` from the latents of level
  ``l + 1`` to those of level ``l`` (``cross_selection_logits``, owned and optimised by level
  ``l``'s trainer) is fitted so that fine firing predicts coarse firing (noisy-OR), sparsified by
  L1, and a coarse latent whose selected fine latents fire is pushed to fire too (hinge);
* **explaining away** (``explain_levels``): level ``l``'s reconstruction adds a learned linear
  read-out of the other levels' codes, ``x_l ~ W_dec z_l + b_dec + sum_{m != l} z_m B_lm``, so
  what one level's activations share with other levels is explained by those levels' concepts
  instead of being absorbed into this level's dictionary. Two cases matter. *Leakage*: a
  residual stream carries other layers' features; a coarse concept is present whenever one of
  its components is, so without the read-out each component's latent copies the coarse leak.
  *Shared components*: in a DAG two coarse concepts that share a finer component co-occur
  whenever it fires, and an independent SAE merges them into one latent (``W_a + W_b``); the
  read-out of the finer code explains that co-occurrence. A finer read-out can also imitate a
  coarse concept, which is a deterministic function of finer ones (under OR it is present
  whenever one of its components is), and then competes with the coarse dictionary. Measured
  (``bench multilevel``, seeds 0-2, ``benchmarks/results/multilevel.md``), reading out *every*
  other level (``explain_levels="all"``, the default) against only the coarser ones: presets a
  and b unchanged (edge F1 1.000), c 1.000 against 0.984, leakage 0.6 0.916 against 0.752, two
  merged coarse pairs 0.825 against 0.815, the language world's cross-layer graph 0.351
  against 0.270; under observation noise 1.6 the imitation costs 0.747 against 0.867 (missed
  edges between matched latents). Projecting the finer read-outs out of the level's decoder span
  was tried and dropped (it broke preset b on one seed: 0.644). The read-out changes
  ``mse_loss`` itself, so it has no entry of its own.

``save_inference_model`` writes an ordinary SAELens SAE directory and, beside it,
``cross_level_selection.safetensors`` (the map and read-outs) and ``cross_level.json`` (edges).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput, TrainStepOutput
from sae_lens.saes.topk_sae import TopKTrainingSAE
from torch import Tensor, nn

from sae_causal_plugin.multilevel import losses
from sae_causal_plugin.saes.firing import BatchTopKFiring, JumpReLUFiring, TopKFiring
from sae_causal_plugin.saes.losses import graph_sparsity_loss, initial_selection_logits, selection_probabilities

CROSS_PREFIXES = ("cross_selection_logits", "cross_leak_logits", "cross_readouts.")
SELECTION_FILENAME = "cross_level_selection.safetensors"
SELECTION_JSON = "cross_level.json"


@dataclass
class CrossLevelConfig:
    """Coefficients of the cross-level terms (:meth:`independent`: the baseline, all off).

    Args:
        selection_coefficient: weight of the cross-level consistency hinge (default 0.1: at 1.0
            the hinge pulled coarse latents onto noisy fine firing and lowered their MCC in the
            noise + leakage benchmark).
        selection_warm_up_steps: linear warm-up of the hinge and of the L1 term, so the map first
            learns which pairs co-fire.
        fit_coefficient: weight of the noisy-OR fit of the selection map (only the map learns).
        graph_sparsity_coefficient: L1 weight on the map (graph minimality).
        edge_threshold: a map weight above this is an edge (hinge and saved edges).
        explain_levels: ``"all"`` (default: every other level), ``"coarser"``, ``"finer"`` or
            ``"none"``: whose codes level ``l``'s reconstruction reads out (module docstring).
        resample_every: every this many steps, latents that fired on less than ``dead_rate`` of
            the samples since the last check are re-initialised to the directions of the batch
            rows reconstructed worst (Anthropic-style resampling; not a cross-level term, kept by
            :meth:`independent`). 0 switches it off.
        dead_rate: firing rate (above the inference threshold) below which a latent counts as dead.
        resample_stop: no resampling after this share of the training steps (a latent resampled
            late has no time to converge).
        k_start_mult: (BatchTopK / TopK only) training starts at ``k_start_mult`` times the
            configured ``k`` and anneals it linearly down to ``k`` over the first
            ``k_anneal_stop`` of the steps. With a generous early budget two concepts that often
            co-fire get a latent each before the final sparsity makes merging them cheaper than
            separating them. Generic, not a cross-level term: :meth:`independent` keeps it.
        k_anneal_stop: share of the training steps after which ``k`` is the configured one.
    """

    selection_coefficient: float = 0.1
    selection_warm_up_steps: int = 200
    fit_coefficient: float = 1.0
    graph_sparsity_coefficient: float = 1e-3
    edge_threshold: float = 0.5
    explain_levels: str = "all"
    resample_every: int = 100
    dead_rate: float = 5e-3
    resample_stop: float = 0.7
    k_start_mult: float = 1.0
    k_anneal_stop: float = 0.5

    def independent(self) -> CrossLevelConfig:
        """A copy with every cross-level term off (the baseline: one independent SAE per level)."""
        return replace(self, selection_coefficient=0.0, fit_coefficient=0.0, graph_sparsity_coefficient=0.0,
                       explain_levels="none")

    @property
    def uses_selection_map(self) -> bool:
        return any(v > 0 for v in (self.selection_coefficient, self.fit_coefficient,
                                    self.graph_sparsity_coefficient))

    def explained_levels(self, level: int, n_levels: int) -> list[int]:
        """Levels whose codes level ``level``'s reconstruction reads out."""
        if self.explain_levels == "all":
            return [m for m in range(n_levels) if m != level]
        if self.explain_levels == "coarser":
            return list(range(level))
        if self.explain_levels == "finer":
            return list(range(level + 1, n_levels))
        return []

    def validate(self) -> None:
        for name in ("selection_coefficient", "fit_coefficient", "graph_sparsity_coefficient"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}; 0 switches it off.")
        for name in ("selection_warm_up_steps", "resample_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        if self.explain_levels not in ("coarser", "finer", "all", "none"):
            raise ValueError(
                f"explain_levels must be 'coarser', 'finer', 'all' or 'none', got {self.explain_levels!r}.")
        if not 0.0 <= self.resample_stop <= 1.0:
            raise ValueError(f"resample_stop must lie in [0, 1], got {self.resample_stop!r}.")
        if not (math.isfinite(self.k_start_mult) and self.k_start_mult >= 1.0):
            raise ValueError(f"k_start_mult must be a finite number >= 1, got {self.k_start_mult!r}; 1 switches it off.")
        if not 0.0 < self.k_anneal_stop <= 1.0:
            raise ValueError(f"k_anneal_stop must lie in (0, 1], got {self.k_anneal_stop!r}.")
        if not 0.0 <= self.dead_rate < 1.0:
            raise ValueError(f"dead_rate must lie in [0, 1), got {self.dead_rate!r}.")
        if not 0.0 <= self.edge_threshold <= 1.0:
            raise ValueError(f"edge_threshold must lie in [0, 1], got {self.edge_threshold!r}.")


class LevelContext:
    """The current paired batch of every level and, on demand, every level's codes for it.

    Not an ``nn.Module``: the SAEs hold it without adopting each other's parameters.
    """

    def __init__(self, saes: list[Any]) -> None:
        self.saes = saes
        self.batch: list[Tensor] | None = None
        self._codes: dict[int, Tensor] = {}

    def set_batch(self, rows: list[Tensor]) -> None:
        self.batch = rows
        self._codes = {}

    @torch.no_grad()
    def codes(self, level: int) -> Float[Tensor, "batch d_sae"]:
        """Level ``level``'s code of the current batch (its SAE's weights at first request)."""
        if self.batch is None:
            raise RuntimeError("no paired batch: train through MultiLevelTrainer, which sets one per step.")
        if level not in self._codes:
            sae = self.saes[level]
            self._codes[level] = sae.encode(self.batch[level].to(sae.W_dec.device)).detach()
        return self._codes[level]


class CrossLevelMixin:
    """Adds the cross-level terms to a SAELens training SAE (put it first in the bases)."""

    cfg: Any
    W_dec: nn.Parameter
    cross_selection_logits: nn.Parameter | None
    cross_leak_logits: nn.Parameter | None
    #: pre-activation a latent must exceed to fire, from the activation kind's mixin (saes/firing.py)
    firing_threshold: Callable[[Tensor], Tensor]

    def __init__(self, cfg: Any, use_error_term: bool = False, *, cross: CrossLevelConfig | None = None,
                 level: int = 0, level_d_sae: list[int] | None = None):
        super().__init__(cfg, use_error_term)  # type: ignore[call-arg]
        self.cross = cross if cross is not None else CrossLevelConfig()
        self.cross.validate()
        self.level = level
        self.level_d_sae = list(level_d_sae) if level_d_sae is not None else [cfg.d_sae]
        self.context: LevelContext | None = None
        self._explained: Tensor | None = None
        dtype, device = self.W_dec.dtype, self.W_dec.device
        self.register_buffer("fires_since_check", torch.zeros(cfg.d_sae, dtype=torch.long, device=device),
                             persistent=False)
        self.n_steps = 0
        self.resample_until: int | None = None  # set by MultiLevelTrainer from the step budget
        self.total_steps: int | None = None  # set by MultiLevelTrainer
        self.samples_since_check = 0
        self.fine_d_sae = self.level_d_sae[level + 1] if level + 1 < len(self.level_d_sae) else None
        if self.fine_d_sae is not None and self.cross.uses_selection_map:
            logits, leak_logits = initial_selection_logits(self.fine_d_sae, cfg.d_sae, dtype=dtype, device=device)
            self.cross_selection_logits = nn.Parameter(logits)
            self.cross_leak_logits = nn.Parameter(leak_logits)
        else:
            self.cross_selection_logits = None
            self.cross_leak_logits = None
        self.cross_readouts = nn.ParameterDict({
            str(m): nn.Parameter(torch.zeros(self.level_d_sae[m], cfg.d_in, dtype=dtype, device=device))
            for m in self.cross.explained_levels(level, len(self.level_d_sae))})

    @property
    def has_selection_map(self) -> bool:
        return self.cross_selection_logits is not None

    def cross_selection_map(self) -> Float[Tensor, "d_sae_fine d_sae"]:
        """Learned ``S[fine latent, coarse latent]`` in ``[0, 1]``."""
        if self.cross_selection_logits is None:
            raise ValueError(
                "this SAE has no cross-level selection map: it is the finest level or its "
                "CrossLevelConfig switches the selection terms off."
            )
        return selection_probabilities(self.cross_selection_logits)

    # ---- SAELens hooks -------------------------------------------------------------------

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        coefficients = dict(super().get_coefficients())  # type: ignore[misc]
        if self.has_selection_map:
            c = self.cross
            coefficients["cross_selection"] = TrainCoefficientConfig(c.selection_coefficient,
                                                                     c.selection_warm_up_steps)
            coefficients["cross_selection_fit"] = TrainCoefficientConfig(c.fit_coefficient, 0)
            coefficients["cross_graph_sparsity"] = TrainCoefficientConfig(c.graph_sparsity_coefficient,
                                                                          c.selection_warm_up_steps)
        return coefficients

    def decode(self, feature_acts: Tensor) -> Tensor:
        out = super().decode(feature_acts)  # type: ignore[misc]
        return out if self._explained is None else out + self._explained

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        every = self.cross.resample_every
        late = self.resample_until is not None and self.n_steps >= self.resample_until
        if every > 0 and self.n_steps > 0 and self.n_steps % every == 0 and not late:
            self.resample_dead_latents(step_input.sae_in)
        self.anneal_k()
        if len(self.cross_readouts) and self.context is not None:
            self._explained = sum(self.context.codes(int(m)) @ b for m, b in self.cross_readouts.items())
        try:
            output = super().training_forward_pass(step_input)  # type: ignore[misc]
        finally:
            self._explained = None
        with torch.no_grad():  # firing as the saved inference SAE will see it (above threshold)
            pre = output.hidden_pre
            fired = (output.feature_acts != 0) & (pre >= self.firing_threshold(pre))
            self.fires_since_check += fired.sum(dim=0)
        self.samples_since_check += output.feature_acts.shape[0]
        self.n_steps += 1
        return output

    def calculate_aux_loss(self, step_input: TrainStepInput, feature_acts: Tensor, hidden_pre: Tensor,
                           sae_out: Tensor) -> dict[str, Tensor]:
        terms = dict(super().calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out))  # type: ignore[misc]
        if not self.has_selection_map or self.context is None:
            return terms
        fine = self.context.codes(self.level + 1) != 0
        coarse = feature_acts != 0
        s = self.cross_selection_map()
        assert self.cross_leak_logits is not None
        leak = selection_probabilities(self.cross_leak_logits)
        k = step_input.coefficients
        threshold = self.firing_threshold(hidden_pre).detach()
        terms["cross_selection_loss"] = k["cross_selection"] * losses.cross_level_consistency_loss(
            fine, coarse, hidden_pre, threshold, s, self.cross.edge_threshold)
        terms["cross_selection_fit_loss"] = k["cross_selection_fit"] * losses.cross_level_fit_loss(
            s, fine, coarse, leak)
        terms["cross_graph_sparsity_loss"] = k["cross_graph_sparsity"] * graph_sparsity_loss(s)
        return terms

    def anneal_k(self) -> None:
        """Set the training ``k`` of a (Batch)TopK activation for the current step (config docs)."""
        fn = getattr(self, "activation_fn", None)
        if self.cross.k_start_mult == 1.0 or self.total_steps is None or not hasattr(fn, "k"):
            return
        progress = min(1.0, self.n_steps / max(1.0, self.cross.k_anneal_stop * self.total_steps))
        k = float(self.cfg.k) * (self.cross.k_start_mult + (1.0 - self.cross.k_start_mult) * progress)
        fn.k = k if isinstance(self.cfg.k, float) else max(int(self.cfg.k), round(k))  # type: ignore[union-attr]

    @torch.no_grad()
    def resample_dead_latents(self, sae_in: Float[Tensor, "batch d_in"]) -> int:
        """Point dead latents at the worst-reconstructed rows of ``sae_in``; returns how many."""
        rate = self.fires_since_check.double() / max(self.samples_since_check, 1)
        self.fires_since_check.zero_()
        self.samples_since_check = 0
        dead = torch.nonzero(rate < self.cross.dead_rate).flatten()
        if dead.numel() == 0:
            return 0
        residual = sae_in - self.decode(self.encode(sae_in))  # type: ignore[attr-defined]
        worst = residual.norm(dim=-1).topk(min(dead.numel(), residual.shape[0])).indices
        dead = dead[: worst.numel()]
        direction = residual[worst] / residual[worst].norm(dim=-1, keepdim=True).clamp_min(1e-8)
        norm = self.W_dec.norm(dim=-1).mean()
        self.W_dec.data[dead] = direction * norm
        self.W_enc.data[:, dead] = direction.T / norm  # type: ignore[attr-defined]
        self.b_enc.data[dead] = 0.0  # type: ignore[attr-defined]
        return int(dead.numel())

    # ---- saving ----------------------------------------------------------------------------

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        for key in [k for k in state_dict if k.startswith(CROSS_PREFIXES)]:
            state_dict.pop(key)
        super().process_state_dict_for_saving_inference(state_dict)  # type: ignore[misc]

    def cross_level_edges(self) -> list[tuple[int, int, float]]:
        """``(fine latent, coarse latent, weight)`` for map weights above ``edge_threshold``."""
        if self.cross_selection_logits is None:
            return []
        with torch.no_grad():
            s = self.cross_selection_map().float().cpu()
        idx = torch.nonzero(s > self.cross.edge_threshold).tolist()
        return [(int(c), int(p), float(s[c, p])) for c, p in idx]

    def save_inference_model(self, path: str | Path) -> tuple[Path, Path]:
        """A stock SAELens directory, plus the cross-level map and read-outs beside it (if any), all
        staged and moved into ``path`` once complete."""
        from sae_causal_plugin._files import staged_dir

        path = Path(path)
        with staged_dir(path, what="SAE folder") as stage:
            weights_path, cfg_path = super().save_inference_model(stage)  # type: ignore[misc]
            tensors = {f"readout_from_level_{m}": b.detach().float().cpu().contiguous()
                       for m, b in self.cross_readouts.items()}
            if self.cross_selection_logits is not None:
                tensors["selection"] = self.cross_selection_map().detach().float().cpu().contiguous()
            if tensors:
                save_file(tensors, str(stage / SELECTION_FILENAME))
                meta = {"level": self.level, "fine_level": self.level + 1 if self.has_selection_map else None,
                        "selection_shape": [self.fine_d_sae, self.cfg.d_sae] if self.has_selection_map else None,
                        "edges": [list(e) for e in self.cross_level_edges()], "cross_level": asdict(self.cross)}
                (stage / SELECTION_JSON).write_text(json.dumps(meta, indent=1))
        return path / Path(weights_path).name, path / Path(cfg_path).name


class CrossLevelBatchTopKTrainingSAE(CrossLevelMixin, BatchTopKFiring, BatchTopKTrainingSAE):
    """SAELens BatchTopK SAE of one level, with the cross-level terms (saved as ``jumprelu``)."""


class CrossLevelTopKTrainingSAE(CrossLevelMixin, TopKFiring, TopKTrainingSAE):
    """SAELens TopK SAE of one level, with the cross-level terms (saved as ``topk``)."""


class CrossLevelJumpReLUTrainingSAE(CrossLevelMixin, JumpReLUFiring, JumpReLUTrainingSAE):
    """SAELens JumpReLU SAE of one level, with the cross-level terms (saved as ``jumprelu``)."""


CROSS_LEVEL_CLASSES = {
    "batchtopk": CrossLevelBatchTopKTrainingSAE,
    "topk": CrossLevelTopKTrainingSAE,
    "jumprelu": CrossLevelJumpReLUTrainingSAE,
}
