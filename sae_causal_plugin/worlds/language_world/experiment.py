"""The language world's experiment settings: one config dataclass, the only place its defaults live.

:func:`~sae_causal_plugin.worlds.language_world.run.run_language_world` runs the experiment from a
:class:`LanguageWorldConfig`; the ``language-world`` bench builds its options from its fields, and
:meth:`LanguageWorldConfig.sae_config` is the SAE that the run trains.

The slot configuration (the SAE reads the entity slots at ``blocks.1.hook_resid_mid``, k 4; steering
and ablation act at the slots; steering value 1.1 x the latent's mean activation) is the default
because it reaches the steering target on seeds 0-2 and halves the ablation fraction against the
noun configuration (``read="nouns"``, ``hook_name="blocks.0.hook_resid_post"``, ``k=3``,
``steer_scale=2.0``, ``steer_positions="all"``), at a lower edge F1 on seeds 1 and 2; both are
measured in ``benchmarks/results/language_world.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sae_causal_plugin.saes import HierarchicalBatchTopKTrainingSAEConfig


@dataclass
class LanguageWorldConfig:
    """Settings of the language-world run (SAE, graph, steering, example)."""

    hook_name: str = field(default="blocks.1.hook_resid_mid", metadata={"option": "--hook"})
    """hook the SAE reads"""
    read: Literal["nouns", "slots"] = "slots"
    """which tokens the SAE reads: the entity nouns or the entity slots (`the`, subcategory cues),
    labelled by what the text named last"""
    training_tokens: int = field(default=300_000, metadata={"positive": True})
    """SAE training tokens"""
    batch_size_tokens: int = field(default=256, metadata={"positive": True})
    """SAE training batch (tokens)"""
    d_sae: int = field(default=48, metadata={"positive": True})
    """SAE width"""
    k: int = field(default=4, metadata={"positive": True})
    """BatchTopK k of the SAE"""
    nested_coefficient: float = 3.0
    """coefficient of the nested coarse-to-fine reconstruction term"""
    level_widths: tuple[int, ...] = field(default=(4, 12), metadata={"positive": True})
    """nested prefix widths (categories, categories + subcategories)"""
    n_eval_documents: int = field(default=1024, metadata={"positive": True})
    """fresh documents for the graph and the latent naming"""
    steer_scale: float = 1.1
    """steering value in units of the latent's mean firing activation"""
    steer_positions: Literal["all", "nouns", "slots"] = "slots"
    """where steering and ablation act: every position, the entity nouns or the entity slots"""
    steer_sweep: tuple[float, ...] = field(default=(), metadata={"option": "--sweep", "metavar": "SCALE"})
    """also measure the steering figures at these scales (a trade-off table)"""
    layers: bool = field(default=True, metadata={"help": "skip the levels = layers SAEs"})
    """also train the levels = layers SAEs (one per layer, trained jointly)"""
    example_prompt: str = "the tasty sweet apple eaten juicy crisp . the"
    """prompt of the report's steering example"""
    example_target: str = "vehicle"
    """category the report's steering example steers toward"""

    def sae_config(self, d_in: int, **overrides: Any) -> HierarchicalBatchTopKTrainingSAEConfig:
        """The hierarchical BatchTopK SAE config these settings describe (``overrides``: more or other
        ``HierarchicalBatchTopKTrainingSAEConfig`` fields, which win)."""
        kwargs: dict[str, Any] = dict(
            d_in=d_in, d_sae=self.d_sae, k=self.k, nested_coefficient=self.nested_coefficient,
            level_widths=list(self.level_widths),
        )
        return HierarchicalBatchTopKTrainingSAEConfig(**{**kwargs, **overrides})


__all__ = ["LanguageWorldConfig"]
