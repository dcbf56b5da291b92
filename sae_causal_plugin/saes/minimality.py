"""The glue between the minimality losses and SAELens's training SAEs.

:class:`MinimalityMixin` is mixed in front of a SAELens ``TrainingSAE`` subclass. It adds the
minimality terms to SAELens's ``losses`` dict from ``calculate_aux_loss`` (so SAELens logs each
of them), their warm-up coefficients to ``get_coefficients`` and a short revival window for dead
latents. ``save_inference_model`` writes a directory stock SAELens loads, all at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput, TrainStepOutput
from torch import Tensor, nn

from sae_causal_plugin.saes import losses

#: A decoder-row pair becomes a compression candidate this far below ``compression_margin``.
NEIGHBOUR_SLACK = 0.1


class MinimalityMixin:
    """Adds the causal-minimality terms to a SAELens training SAE (put it first in the bases)."""

    cfg: Any
    W_dec: nn.Parameter
    b_dec: nn.Parameter
    since_fired: Tensor
    compression_neighbours: Tensor

    def __init__(self, cfg: Any, use_error_term: bool = False):
        cfg.validate_minimality()
        super().__init__(cfg, use_error_term)  # type: ignore[call-arg]
        self.register_buffer("since_fired", torch.zeros(cfg.d_sae, dtype=torch.long, device=self.W_dec.device),
                             persistent=False)
        self.register_buffer("compression_neighbours",
                             torch.empty(cfg.d_sae, 0, dtype=torch.long, device=self.W_dec.device), persistent=False)
        self._refresh_start = 0
        #: ``reduce(tensor, "max" | "min" | "sum")`` over the ranks of a data-parallel run
        #: (:func:`sae_causal_plugin.distributed.data_parallel` sets it); ``None``: one process.
        self.rank_reduce: Callable[[Tensor, str], Tensor] | None = None

    # ---- SAELens hooks -------------------------------------------------------------------

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        cfg = self.cfg
        coefficients = dict(super().get_coefficients())  # type: ignore[misc]
        coefficients["nested"] = TrainCoefficientConfig(cfg.nested_coefficient, cfg.nested_warm_up_steps)
        coefficients["compression"] = TrainCoefficientConfig(cfg.compression_coefficient, cfg.compression_warm_up_steps)
        return coefficients

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        check_activations(step_input.sae_in, self.cfg.d_in)
        return super().training_forward_pass(step_input)  # type: ignore[misc]

    def calculate_aux_loss(
        self,
        step_input: TrainStepInput,
        feature_acts: Tensor,
        hidden_pre: Tensor,
        sae_out: Tensor,
    ) -> dict[str, Tensor]:
        self._track_firing(feature_acts)
        if self.cfg.revival_window > 0:
            step_input = dataclasses.replace(
                step_input, dead_neuron_mask=self.since_fired > self.cfg.revival_window)
        base = super().calculate_aux_loss(step_input, feature_acts, hidden_pre, sae_out)  # type: ignore[misc]
        terms = dict(base) if isinstance(base, dict) else {"aux_loss": base}
        coefficients = step_input.coefficients
        widths = self.cfg.resolved_level_widths()
        if widths and self.cfg.nested_coefficient > 0:
            terms["nested_loss"] = coefficients["nested"] * losses.nested_reconstruction_loss(
                feature_acts, self._decoder_for_acts(), self.b_dec, step_input.sae_in, widths)
        if self.cfg.compression_coefficient > 0:
            terms["compression_loss"] = coefficients["compression"] * losses.dictionary_compression_loss(
                self.W_dec, self.cfg.compression_margin, self._refreshed_neighbours(),
                self.cfg.compression_max_pairs)
        return terms

    # ---- bookkeeping -----------------------------------------------------------------------

    @torch.no_grad()
    def _track_firing(self, feature_acts: Tensor) -> None:
        """Count steps since each latent fired (every architecture here has activations >= 0)."""
        if self.training and self.cfg.revival_window > 0:
            fired = feature_acts.amax(dim=0) > 0
            if self.rank_reduce is not None:
                fired = self.rank_reduce(fired.to(torch.uint8), "max").bool()
            self.since_fired += 1
            self.since_fired[fired] = 0

    def _decoder_for_acts(self) -> Tensor:
        """Decoder that maps ``feature_acts`` to the input (unit rows when acts are rescaled)."""
        if getattr(self.cfg, "rescale_acts_by_decoder_norm", False):
            return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        return self.W_dec

    def _refreshed_neighbours(self) -> Tensor:
        """The compression term's candidate pairs, with the next ``compression_refresh_rows`` rows renewed.

        The first call fills the whole table; later calls renew one block of rows in turn, so
        every row's candidates are at most ``d_sae / compression_refresh_rows`` steps old. A pair
        is a candidate from ``NEIGHBOUR_SLACK`` below the margin, so rows that drift towards
        each other between renewals are already compared.
        """
        cfg = self.cfg
        d_sae, block = cfg.d_sae, min(cfg.compression_refresh_rows, cfg.d_sae)
        threshold = max(cfg.compression_margin - NEIGHBOUR_SLACK, 0.0)
        device = self.W_dec.device
        if self.compression_neighbours.shape[1] == 0:
            self.compression_neighbours = torch.cat([
                losses.coherent_neighbours(self.W_dec, torch.arange(start, min(start + block, d_sae), device=device),
                                           threshold, cfg.compression_neighbours)
                for start in range(0, d_sae, block)])
            self._refresh_start = 0
        else:
            rows = (self._refresh_start + torch.arange(block, device=device)) % d_sae
            self.compression_neighbours[rows] = losses.coherent_neighbours(
                self.W_dec, rows, threshold, cfg.compression_neighbours)
            self._refresh_start = (self._refresh_start + block) % d_sae
        return self.compression_neighbours

    # ---- saving ----------------------------------------------------------------------------

    def save_inference_model(self, path: str | Path) -> tuple[Path, Path]:
        """Save a stock-SAELens directory (``cfg.json`` + ``sae_weights.safetensors``).

        Everything is written into a staging folder beside ``path`` first and moved in only
        when complete (:func:`~sae_causal_plugin._files.staged_dir`), so a failure or an
        interrupt leaves no half-written SAE behind.
        """
        from sae_causal_plugin._files import staged_dir

        target = Path(path)
        with staged_dir(target, what="SAE folder") as staging:
            weights, cfg = super().save_inference_model(staging)  # type: ignore[misc]
        return target / Path(weights).name, target / Path(cfg).name


def check_activations(x: Tensor, d_in: int) -> None:
    """Raise ``ValueError`` for activations an SAE of width ``d_in`` cannot train on."""
    if x.shape[-1] != d_in:
        raise ValueError(
            f"activations have d_in={x.shape[-1]} but the SAE expects d_in={d_in}; "
            "set the SAE config's d_in to the width of the hook you train on."
        )
    if not torch.isfinite(x.sum(dtype=torch.float64)):  # NaN / Inf make it non-finite; finite values cannot overflow
        raise ValueError(
            "activations contain NaN or Inf; clean or clip the activation source before training."
        )
