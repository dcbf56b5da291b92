"""The glue between the minimality losses and SAELens's training SAEs.

:class:`MinimalityMixin` is mixed in front of a SAELens ``TrainingSAE`` subclass. It adds the
minimality terms to SAELens's ``losses`` dict from ``calculate_aux_loss`` (so SAELens logs each
of them), their warm-up coefficients to ``get_coefficients`` and a short revival window for dead
latents. ``save_inference_model`` writes a directory stock SAELens loads, all at once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput, TrainStepOutput
from torch import Tensor, nn

from sae_causal_plugin.saes import losses


class MinimalityMixin:
    """Adds the causal-minimality terms to a SAELens training SAE (put it first in the bases)."""

    cfg: Any
    W_dec: nn.Parameter
    b_dec: nn.Parameter
    since_fired: Tensor

    def __init__(self, cfg: Any, use_error_term: bool = False):
        cfg.validate_minimality()
        super().__init__(cfg, use_error_term)  # type: ignore[call-arg]
        self.register_buffer("since_fired", torch.zeros(cfg.d_sae, dtype=torch.long, device=self.W_dec.device),
                             persistent=False)

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
        self._track_firing(feature_acts != 0)
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
                self.W_dec, self.cfg.compression_margin, self._compression_rows())
        return terms

    # ---- bookkeeping -----------------------------------------------------------------------

    @torch.no_grad()
    def _track_firing(self, fired: Tensor) -> None:
        if self.training and self.cfg.revival_window > 0:
            self.since_fired += 1
            self.since_fired[fired.any(dim=0)] = 0

    def _decoder_for_acts(self) -> Tensor:
        """Decoder that maps ``feature_acts`` to the input (unit rows when acts are rescaled)."""
        if getattr(self.cfg, "rescale_acts_by_decoder_norm", False):
            return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        return self.W_dec

    def _compression_rows(self) -> Tensor | None:
        d_sae = self.cfg.d_sae
        if d_sae <= self.cfg.compression_max_rows:
            return None
        return torch.randperm(d_sae, device=self.W_dec.device)[: self.cfg.compression_max_rows]

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
    if not torch.isfinite(x).all():
        raise ValueError(
            "activations contain NaN or Inf; clean or clip the activation source before training."
        )
