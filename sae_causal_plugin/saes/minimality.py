"""The glue between the minimality losses and SAELens's training SAEs.

:class:`MinimalityMixin` is mixed in front of a SAELens ``TrainingSAE`` subclass. It adds the
minimality terms to SAELens's ``losses`` dict from ``calculate_aux_loss`` (so SAELens logs each
of them), their warm-up coefficients to ``get_coefficients``, a learned selection map
(``selection_logits``, a ``d_sae x d_sae`` parameter) and a short revival window for dead
latents. ``save_inference_model`` writes a directory stock SAELens loads, and the learned
hierarchy beside it (see :mod:`sae_causal_plugin.saes.metadata`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput, TrainStepOutput
from torch import Tensor, nn

from sae_causal_plugin.saes import losses
from sae_causal_plugin.saes.metadata import HierarchyMetadata, save_hierarchy

SELECTION_KEYS = ("selection_logits", "selection_leak_logits")
SELECTION_LOGIT_SCALE = 20.0


class MinimalityMixin:
    """Adds the causal-minimality terms to a SAELens training SAE (put it first in the bases)."""

    cfg: Any
    W_dec: nn.Parameter
    b_dec: nn.Parameter
    selection_logits: nn.Parameter | None
    selection_leak_logits: nn.Parameter | None
    since_fired: Tensor

    def __init__(self, cfg: Any, use_error_term: bool = False):
        cfg.validate_minimality()
        super().__init__(cfg, use_error_term)  # type: ignore[call-arg]
        d_sae, device = cfg.d_sae, self.W_dec.device
        self.register_buffer("since_fired", torch.zeros(d_sae, dtype=torch.long, device=device),
                             persistent=False)
        self._cofiring: Any = None  # statistics of the running window (graph.CoFiringStats)
        self._finished_cofiring: Any = None  # those of the last finished window
        self._steps_tracked = 0
        self._cofiring_edges: tuple[Tensor, Tensor, Tensor] | None = None
        if self.selection_enabled:
            # logits = SELECTION_LOGIT_SCALE * parameter: under Adam the map then moves that much
            # faster than the dictionary, so it tracks the hierarchy from the first steps.
            self.selection_logits = nn.Parameter(torch.full(
                (d_sae, d_sae), -4.0 / SELECTION_LOGIT_SCALE, dtype=self.W_dec.dtype, device=device))
            self.selection_leak_logits = nn.Parameter(
                torch.zeros(d_sae, dtype=self.W_dec.dtype, device=device))
        else:
            self.selection_logits = None
            self.selection_leak_logits = None

    @property
    def selection_enabled(self) -> bool:
        cfg = self.cfg
        uses_map = (cfg.selection_coefficient > 0 and cfg.selection_edges == "map") or (
            cfg.graph_sparsity_coefficient > 0)
        return uses_map and cfg.d_sae <= cfg.selection_max_latents

    # ---- SAELens hooks -------------------------------------------------------------------

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        cfg = self.cfg
        coefficients = dict(super().get_coefficients())  # type: ignore[misc]
        coefficients["nested"] = TrainCoefficientConfig(
            cfg.nested_coefficient, cfg.nested_warm_up_steps)
        coefficients["compression"] = TrainCoefficientConfig(
            cfg.compression_coefficient, cfg.compression_warm_up_steps)
        if self.selection_enabled or cfg.selection_coefficient > 0:
            coefficients["selection"] = TrainCoefficientConfig(
                cfg.selection_coefficient, cfg.selection_warm_up_steps)
        if self.selection_enabled:
            coefficients["selection_fit"] = TrainCoefficientConfig(
                cfg.selection_fit_coefficient, 0)
            coefficients["graph_sparsity"] = TrainCoefficientConfig(
                cfg.graph_sparsity_coefficient, cfg.selection_warm_up_steps)
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
        fired = feature_acts != 0
        self._track_firing(fired)
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
        if self.selection_enabled:
            terms.update(self._selection_terms(coefficients, fired, hidden_pre, feature_acts))
        if self.cfg.selection_edges == "cofiring" and self.cfg.selection_coefficient > 0:
            children, parents, strength = self._refreshed_cofiring_edges(hidden_pre.device)
            terms["selection_loss"] = coefficients["selection"] * losses.selection_consistency_loss(
                fired, hidden_pre, self.firing_threshold(hidden_pre, feature_acts).detach(),
                children, parents, strength.to(hidden_pre.dtype))
        return terms

    def _refreshed_cofiring_edges(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Edges (child, parent, P(parent | child)) of the running co-firing statistics."""
        refresh = self._steps_tracked % self.cfg.selection_refresh_every == 0
        if self._cofiring_edges is None or refresh:
            from sae_causal_plugin.graph import build_concept_graph

            stats = self._cofiring if self._cofiring is not None else self._finished_cofiring
            edges: list[tuple[int, int, float]] = []
            if stats is not None and stats.n_pairs > 0:
                graph = build_concept_graph(stats, min_conditional=self.cfg.selection_min_conditional)
                edges = [(c, p, graph.edge_stats(c, p)["p_parent_given_child"]) for c, p in graph.edges]
            self._cofiring_edges = (
                torch.tensor([e[0] for e in edges], dtype=torch.long, device=device),
                torch.tensor([e[1] for e in edges], dtype=torch.long, device=device),
                torch.tensor([e[2] for e in edges], dtype=torch.float32, device=device),
            )
        return self._cofiring_edges

    # ---- selection map -------------------------------------------------------------------

    def selection_map(self) -> Float[Tensor, "d_sae d_sae"]:
        """Learned ``S[child, parent]`` in ``[0, 1]`` (zero diagonal); needs the map enabled."""
        if self.selection_logits is None:
            raise ValueError(
                "this SAE has no selection map: set selection_coefficient > 0 and "
                "d_sae <= selection_max_latents in its config."
            )
        s = torch.sigmoid(SELECTION_LOGIT_SCALE * self.selection_logits)
        return s * (1.0 - torch.eye(s.shape[0], dtype=s.dtype, device=s.device))

    def firing_threshold(self, hidden_pre: Tensor, feature_acts: Tensor) -> Tensor:
        """Pre-activation a latent must exceed to fire, broadcastable to ``hidden_pre``."""
        raise NotImplementedError

    def _selection_terms(
        self, coefficients: dict[str, float], fired: Tensor, hidden_pre: Tensor, feature_acts: Tensor
    ) -> dict[str, Tensor]:
        s = self.selection_map()
        assert self.selection_leak_logits is not None
        fired_f = fired.to(s.dtype)
        fit = losses.selection_map_fit_loss(s, fired_f, fired_f, torch.sigmoid(SELECTION_LOGIT_SCALE * self.selection_leak_logits))
        with torch.no_grad():
            children, parents = torch.nonzero(s > self.cfg.selection_threshold, as_tuple=True)
            strength = s[children, parents]
        consistency = losses.selection_consistency_loss(
            fired, hidden_pre, self.firing_threshold(hidden_pre, feature_acts).detach(),
            children, parents, strength)
        return {
            "selection_loss": coefficients["selection"] * consistency,
            "selection_fit_loss": coefficients["selection_fit"] * fit,
            "graph_sparsity_loss": coefficients["graph_sparsity"] * losses.graph_sparsity_loss(s),
        }

    # ---- bookkeeping -----------------------------------------------------------------------

    @torch.no_grad()
    def _track_firing(self, fired: Tensor) -> None:
        if not self.training:
            return
        if self.cfg.revival_window > 0:
            self.since_fired += 1
            self.since_fired[fired.any(dim=0)] = 0
        every = self.cfg.hierarchy_update_every
        if every > 0:
            if self._steps_tracked % every == 0:
                self._running_cofiring().update(fired)
            self._steps_tracked += 1
            if self._steps_tracked % self.cfg.hierarchy_window == 0:
                self._finished_cofiring, self._cofiring = self._cofiring, None

    def _running_cofiring(self) -> Any:
        from sae_causal_plugin.graph import CoFiringStats

        if self._cofiring is None:
            self._cofiring = CoFiringStats(self.cfg.d_sae, min_conditional=0.5)
        return self._cofiring

    def learned_concept_graph(self) -> Any:
        """Concept graph of the latents' co-firing during the last finished training window.

        Recovered with :func:`sae_causal_plugin.graph.build_concept_graph` (minimal parent
        sets, default thresholds); ``None`` before any statistics were collected.
        """
        from sae_causal_plugin.graph import build_concept_graph

        stats = self._finished_cofiring or self._cofiring
        if stats is None or stats.n_samples == 0 or stats.n_pairs == 0:
            return None
        return build_concept_graph(stats)

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

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        for key in SELECTION_KEYS:
            state_dict.pop(key, None)
        super().process_state_dict_for_saving_inference(state_dict)  # type: ignore[misc]

    def hierarchy_metadata(self) -> HierarchyMetadata:
        """The hierarchy this SAE learned: selection edges, firing rates, config of the terms."""
        stats = self._finished_cofiring or self._cofiring
        rates = None
        if stats is not None and stats.n_samples > 0:
            rates = (stats.firing_counts.double() / stats.n_samples).tolist()
        edges: list[tuple[int, int, float]] = []
        selection: list[tuple[int, int, float]] = []
        graph = self.learned_concept_graph()
        if graph is not None:
            edges = [(int(c), int(p), float(graph.edge_stats(c, p)["p_parent_given_child"]))
                     for c, p in graph.edges]
        if self.selection_logits is not None:
            with torch.no_grad():
                s = self.selection_map().float().cpu()
            idx = torch.nonzero(s > self.cfg.selection_threshold)
            selection = [(int(c), int(p), float(s[c, p])) for c, p in idx.tolist()]
        return HierarchyMetadata.from_edges(
            architecture=self.cfg.architecture(),
            edges=edges,
            selection_map=selection,
            firing_rates=rates,
            minimality={f.name: getattr(self.cfg, f.name)
                        for f in dataclasses.fields(self.cfg) if _is_minimality_field(f.name)},
        )

    def save_inference_model(self, path: str | Path) -> tuple[Path, Path]:
        """Save a stock-SAELens directory plus ``hierarchy.json`` with the learned hierarchy.

        Everything is written into a staging folder beside ``path`` first and moved in only
        when complete (:func:`~sae_causal_plugin._files.staged_dir`), so a failure or an
        interrupt leaves no half-written SAE behind.
        """
        from sae_causal_plugin._files import staged_dir

        target = Path(path)
        with staged_dir(target, what="SAE folder") as staging:
            weights, cfg = super().save_inference_model(staging)  # type: ignore[misc]
            save_hierarchy(self.hierarchy_metadata(), staging)
        return target / Path(weights).name, target / Path(cfg).name


def _is_minimality_field(name: str) -> bool:
    from sae_causal_plugin.saes.config import MinimalityConfig

    return name in {f.name for f in dataclasses.fields(MinimalityConfig)}


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
