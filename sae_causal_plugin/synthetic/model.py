"""`HierarchicalSelectionModel`: paired multi-level activations with a known selection DAG.

Generation (DESIGN.md section 1, "hierarchical selection model"):

1. The finest level ``L`` is sampled sparse: concept ``i`` is present with a Zipfian
   probability ``p_i`` (optionally correlated through a low-rank Gaussian copula, which keeps
   every marginal ``p_i`` exact).
2. Going up, every concept ``j`` of level ``l`` is a deterministic rule (OR / AND / threshold)
   of its composing set ``Pa(j)`` on level ``l + 1``.
3. A present concept gets a magnitude, uniform in ``magnitude_range``.
4. Each level has its own observation space: ``x_l = f(W_l a_l + sum_m leak^|l-m| U_lm a_m)
   + noise``; ``W_l`` has unit rows (``feature_vectors[l]``, one per concept, the SAELens
   ``FeatureDictionary`` convention).

One row of every level's activations comes from the same sample, like the activations an SAE
sees at several layers or timesteps for the same input. Saved like a SAELens
``SyntheticModel``: a directory with a JSON config and a safetensors file of weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.graph.layered import node_id
from sae_causal_plugin.synthetic.compositions import (
    assign_parent_sets,
    compose,
    pad_parent_sets,
    relevant_components,
    witness_sets,
)
from sae_causal_plugin.synthetic.config import HierarchicalSelectionConfig

CONFIG_FILENAME = "hierarchical_selection_model_config.json"
WEIGHTS_FILENAME = "hierarchical_selection_model.safetensors"
_FORMAT = "sae_causal_plugin.HierarchicalSelectionModel"


@dataclass
class MultiLevelSample:
    """Paired samples: row ``i`` of every list entry comes from the same underlying input.

    Attributes:
        activations: observations ``x_l``, ``[n, d_l]`` per level (level 0 first).
        concepts: presence of the true concepts, ``[n, n_l]`` bool per level.
        magnitudes: true concept activations ``a_l`` (zero where absent), ``[n, n_l]``.
    """

    activations: list[Float[Tensor, "n d"]]
    concepts: list[Bool[Tensor, "n c"]]
    magnitudes: list[Float[Tensor, "n c"]]


def _unit_rows(n: int, d: int, generator: torch.Generator) -> Float[Tensor, "n d"]:
    w = torch.randn(n, d, generator=generator)
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def zipf_probabilities(n: int, max_prob: float, min_prob: float, exponent: float) -> Float[Tensor, " n"]:
    """``rank ** -exponent`` rescaled onto ``[min_prob, max_prob]`` (rank 1 gets ``max_prob``)."""
    r = torch.arange(1, n + 1, dtype=torch.float64).pow(-exponent)
    if n == 1 or float(r[0] - r[-1]) == 0.0:
        return torch.full((n,), max_prob, dtype=torch.float32)
    scaled = (r - r[-1]) / (r[0] - r[-1])
    return (min_prob + scaled * (max_prob - min_prob)).float()


class HierarchicalSelectionModel:
    """A synthetic world of concepts on levels ``0..L`` linked by deterministic selections.

    Args:
        config: sizes, composition rule and observation model.
        seed: seeds the structure, the directions and the default sampling stream.
        device: where the weights live and samples are made.

    Example:
        >>> model = HierarchicalSelectionModel(HierarchicalSelectionConfig([4, 8], parents=2), seed=0)
        >>> batch = model.sample(16)
        >>> [x.shape[-1] for x in batch.activations]
        [4, 8]
    """

    def __init__(self, config: HierarchicalSelectionConfig, seed: int = 0, device: str | torch.device = "cpu"):
        if not isinstance(config, HierarchicalSelectionConfig):
            raise TypeError(f"config must be a HierarchicalSelectionConfig, got {type(config).__name__}.")
        config.validate()
        self.cfg = config
        self.seed = int(seed)
        self.device = torch.device(device)
        sizes, dims = config.concepts_per_level, config.dims()
        gens = [torch.Generator().manual_seed(self.seed * 1009 + part) for part in range(4)]
        self.parent_index: list[Int[Tensor, "n k"]] = []
        self.composition_weights: list[Float[Tensor, "n k"]] = []
        self.composition_thresholds: list[Float[Tensor, " n"]] = []
        for level, name in enumerate(config.compositions()):
            index, weights, thresholds = self._make_level_structure(
                name, sizes[level], sizes[level + 1], gens[0])
            self.parent_index.append(index)
            self.composition_weights.append(weights)
            self.composition_thresholds.append(thresholds)
        self.feature_vectors = [_unit_rows(n, d, gens[1]) for n, d in zip(sizes, dims)]
        self.leakage_vectors = {
            (level, other): _unit_rows(sizes[other], dims[level], gens[2])
            for level in range(len(sizes)) for other in range(len(sizes)) if other != level
        }
        probs = zipf_probabilities(sizes[-1], config.max_prob, config.min_prob, config.zipf_exponent)
        self.firing_probabilities = probs[torch.randperm(sizes[-1], generator=gens[3])]
        self.correlation_loadings = _unit_rows(sizes[-1], config.correlation_rank, gens[3])
        self.merged_pairs = self._choose_merged_pairs(torch.Generator().manual_seed(self.seed * 1009 + 5))
        self._generator = torch.Generator(device=self.device).manual_seed(self.seed * 1009 + 7)
        self.to(self.device)

    # ---- structure -----------------------------------------------------------------------

    def _make_level_structure(
        self, name: str, n_coarse: int, n_fine: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        k = self.cfg.parents
        sets = assign_parent_sets(n_coarse, n_fine, k, generator, max_overlap=self.cfg.max_overlap)
        weights = torch.ones(n_coarse, k)
        thresholds = torch.zeros(n_coarse)
        if name == "threshold":
            raw = 0.5 + torch.rand(n_coarse, k, generator=generator)
            kept_sets: list[list[int]] = []
            for j, members in enumerate(sets):
                thr = self.cfg.threshold_fraction * float(raw[j].sum())
                keep = relevant_components(raw[j], thr)
                kept_sets.append([m for m, flag in zip(members, keep.tolist()) if flag])
                weights[j] = 0.0
                weights[j, : int(keep.sum())] = raw[j][keep]
                thresholds[j] = thr
            sets = kept_sets
        return pad_parent_sets(sets, k), weights, thresholds

    def witnesses(self, concept: int) -> Bool[Tensor, "n_witness n_finest"]:
        """Finest-concept sets that each switch coarsest concept ``concept`` on (see ``witness_sets``)."""
        return witness_sets(self.cfg.compositions(), self.parent_index, 0, concept,
                            self.cfg.concepts_per_level[-1]).to(self.parent_index[0].device)

    def _choose_merged_pairs(self, generator: torch.Generator) -> Int[Tensor, "n_pairs 2"]:
        """``cfg.merged_pairs`` disjoint pairs of coarsest concepts, each partner chosen to share
        the fewest components with the other (then the fewest finest descendants)."""
        n_pairs = self.cfg.merged_pairs
        if n_pairs == 0:
            return torch.zeros(0, 2, dtype=torch.long)
        parts = [set(p) for p in self.parent_sets(0)]
        finest = [self.witnesses(j).any(dim=0) for j in range(len(parts))]
        free = torch.randperm(len(parts), generator=generator).tolist()
        pairs: list[list[int]] = []
        while len(pairs) < n_pairs:
            a = free.pop(0)
            b = min(free, key=lambda c: (len(parts[a] & parts[c]), int((finest[a] & finest[c]).sum())))
            free.remove(b)
            pairs.append(sorted((a, b)))
        return torch.tensor(pairs, dtype=torch.long)

    @property
    def n_levels(self) -> int:
        return self.cfg.n_levels

    def parent_sets(self, level: int) -> list[list[int]]:
        """Composing sets ``Pa(j)`` (indices on level ``level + 1``) of every concept of ``level``."""
        return [[int(i) for i in row if i >= 0] for row in self.parent_index[level].tolist()]

    def multi_parent_share(self, level: int) -> float:
        """Share of the concepts of ``level`` (>= 1) that compose two or more coarser concepts."""
        if not 1 <= level < self.n_levels:
            raise ValueError(f"level must lie in [1, {self.n_levels - 1}], got {level}.")
        uses = torch.zeros(self.cfg.concepts_per_level[level], dtype=torch.long)
        for members in self.parent_sets(level - 1):
            uses[members] += 1
        return float((uses >= 2).float().mean())

    def true_graph(self) -> ConceptGraph:
        """The true selection DAG: nodes ``"L{l}:{i}"`` with ``level``; edges fine -> coarse."""
        graph = ConceptGraph()
        for level, n in enumerate(self.cfg.concepts_per_level):
            for i in range(n):
                graph.add_concept(node_id(level, i), level=level)
        for level, name in enumerate(self.cfg.compositions()):
            weights = self.composition_weights[level]
            for j, members in enumerate(self.parent_sets(level)):
                for slot, c in enumerate(members):
                    graph.add_edge(node_id(level + 1, c), node_id(level, j), composition=name,
                                   weight=float(weights[j, slot]))
        graph.meta.update(source=_FORMAT, seed=self.seed)
        return graph

    # ---- sampling ------------------------------------------------------------------------

    @torch.no_grad()
    def sample_concepts(self, n: int, generator: torch.Generator | None = None) -> list[Bool[Tensor, "n c"]]:
        """Presence of every level's concepts for ``n`` samples (level 0 first)."""
        g = generator if generator is not None else self._generator
        p = self.firing_probabilities
        if self.cfg.correlation > 0:
            rho = self.cfg.correlation
            shared = torch.randn(n, self.cfg.correlation_rank, generator=g, device=self.device)
            z = (1 - rho) ** 0.5 * torch.randn(n, p.shape[0], generator=g, device=self.device)
            z = z + rho ** 0.5 * shared @ self.correlation_loadings.T
            finest = z < torch.special.ndtri(p)
        else:
            finest = torch.rand(n, p.shape[0], generator=g, device=self.device) < p
        levels = self._compose_up(finest)
        pairs = self.merged_pairs.tolist()
        if not pairs:
            return levels
        # one draw per sample and pair: whether that pair is merged in that sample (merge_rate)
        merged = torch.rand(n, len(pairs), generator=g, device=self.device) < self.cfg.merge_rate
        options = {c: self.witnesses(c) for pair in pairs for c in pair}
        picks = {c: torch.randint(w.shape[0], (n,), generator=g, device=self.device) for c, w in options.items()}
        for _ in range(len(pairs) + 1):  # switching one pair on can switch on a concept of another pair
            changed = False
            for p, (a, b) in enumerate(pairs):
                for have, lack in ((a, b), (b, a)):
                    coarse = levels[0]
                    rows = coarse[:, have] & ~coarse[:, lack] & merged[:, p]
                    if rows.any():
                        finest = finest | (rows[:, None] & options[lack][picks[lack]])
                        levels = self._compose_up(finest)
                        changed = True
            if not changed:
                break
        return levels

    def _compose_up(self, finest: Bool[Tensor, "n c"]) -> list[Bool[Tensor, "n c"]]:
        levels = [finest]
        for level in reversed(range(self.n_levels - 1)):
            levels.insert(0, compose(self.cfg.compositions()[level], levels[0], self.parent_index[level],
                                     self.composition_weights[level], self.composition_thresholds[level]))
        return levels

    @torch.no_grad()
    def observe(self, magnitudes: list[Float[Tensor, "n c"]],
                generator: torch.Generator | None = None) -> list[Float[Tensor, "n d"]]:
        """Observation ``x_l`` of every level from the true concept activations."""
        g = generator if generator is not None else self._generator
        cfg = self.cfg
        out = []
        for level, a in enumerate(magnitudes):
            z = a @ self.feature_vectors[level]
            if cfg.leakage > 0:
                for other, a_other in enumerate(magnitudes):
                    if other != level:
                        scale = cfg.leakage ** abs(level - other)
                        z = z + scale * a_other @ self.leakage_vectors[(level, other)]
            if cfg.nonlinearity == "tanh":
                z = torch.tanh(cfg.nonlinearity_scale * z) / cfg.nonlinearity_scale
            if cfg.noise > 0:
                d = z.shape[-1]
                z = z + cfg.noise / d ** 0.5 * torch.randn(z.shape, generator=g, device=self.device)
            out.append(z)
        return out

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> MultiLevelSample:
        """``n`` paired samples; ``seed`` gives a reproducible stream independent of past calls."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}.")
        g = self._generator if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        concepts = self.sample_concepts(n, g)
        lo, hi = self.cfg.magnitude_range
        magnitudes = [c * (lo + (hi - lo) * torch.rand(c.shape, generator=g, device=self.device))
                      for c in concepts]
        return MultiLevelSample(self.observe(magnitudes, g), concepts, magnitudes)

    def sample_activations(self, n: int, seed: int | None = None) -> list[Float[Tensor, "n d"]]:
        """Only the paired observations ``[x_0, ..., x_L]``."""
        return self.sample(n, seed).activations

    def batches(self, batch_size: int, seed: int | None = None):
        """Endless iterator of paired activation batches (lists of ``[batch_size, d_l]``)."""
        g = self._generator if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        lo, hi = self.cfg.magnitude_range
        while True:
            concepts = self.sample_concepts(batch_size, g)
            mags = [c * (lo + (hi - lo) * torch.rand(c.shape, generator=g, device=self.device))
                    for c in concepts]
            yield self.observe(mags, g)

    # ---- persistence ---------------------------------------------------------------------

    def _tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {
            "firing_probabilities": self.firing_probabilities,
            "correlation_loadings": self.correlation_loadings,
        }
        if self.merged_pairs.numel():
            out["merged_pairs"] = self.merged_pairs
        for level, w in enumerate(self.feature_vectors):
            out[f"feature_vectors.{level}"] = w
        for level in range(self.n_levels - 1):
            out[f"parent_index.{level}"] = self.parent_index[level]
            out[f"composition_weights.{level}"] = self.composition_weights[level]
            out[f"composition_thresholds.{level}"] = self.composition_thresholds[level]
        for (level, other), w in self.leakage_vectors.items():
            out[f"leakage_vectors.{level}.{other}"] = w
        return out

    def to(self, device: str | torch.device) -> HierarchicalSelectionModel:
        """Move weights to ``device`` (the sampling stream restarts from the model seed)."""
        self.device = torch.device(device)
        for name, value in self._tensors().items():
            self._set_tensor(name, value.to(self.device))
        self._generator = torch.Generator(device=self.device).manual_seed(self.seed * 1009 + 7)
        return self

    def _set_tensor(self, name: str, value: Tensor) -> None:
        parts = name.split(".")
        if parts[0] in ("firing_probabilities", "correlation_loadings", "merged_pairs"):
            setattr(self, parts[0], value)
        elif parts[0] == "leakage_vectors":
            self.leakage_vectors[(int(parts[1]), int(parts[2]))] = value
        else:
            getattr(self, parts[0])[int(parts[1])] = value

    def save(self, path: str | Path) -> None:
        """Write ``hierarchical_selection_model_config.json`` + ``.safetensors`` into ``path`` (staged)."""
        from sae_causal_plugin._files import staged_dir

        meta = {"format": _FORMAT, "version": 1, "seed": self.seed, "config": self.cfg.to_dict()}
        with staged_dir(path, what="model folder") as stage:
            (stage / CONFIG_FILENAME).write_text(json.dumps(meta, indent=2))
            save_file({k: v.detach().cpu().contiguous() for k, v in self._tensors().items()},
                      str(stage / WEIGHTS_FILENAME))

    @classmethod
    def load_from_disk(cls, path: str | Path, device: str | torch.device = "cpu") -> HierarchicalSelectionModel:
        """Inverse of :meth:`save`: weights come from the file, not from re-running the seed."""
        path = Path(path)
        if not (path / CONFIG_FILENAME).exists():
            raise ValueError(f"{path} holds no {CONFIG_FILENAME}; pass a directory written by save().")
        meta = json.loads((path / CONFIG_FILENAME).read_text())
        model = cls(HierarchicalSelectionConfig.from_dict(meta["config"]), seed=meta["seed"])
        for name, value in load_file(str(path / WEIGHTS_FILENAME)).items():
            model._set_tensor(name, value)
        return model.to(device)

    def __repr__(self) -> str:
        return (f"HierarchicalSelectionModel(levels={self.cfg.concepts_per_level}, parents={self.cfg.parents}, "
                f"composition={self.cfg.composition!r}, seed={self.seed})")
