"""Decoder factorisation: make absorbed parents visible again (pure tensor maths + SAE glue).

An SAE whose child latent absorbed its parent has a decoder row ``U[child] ~ a U[parent] + own``
(``U`` = unit decoder directions).  Write ``U = A U + R`` with ``A`` sparse, non-negative,
child -> parent and acyclic, and ``R = (I - A) U`` the *atoms*.  With ``c`` the code scaled by
the decoder norms, the *selection code* ``c' = c (I - A)^-1`` decodes to exactly what the SAE
decoded (``c' R = c U``), and in ``c'`` a parent is present whenever a child that absorbed it
fires: a coarse concept composed from finer ones with a non-negative composition matrix.

Finding ``A`` (:func:`find_composition`), for every latent ``i``:

1. candidates: the ``n_candidates`` decoder rows nearest to ``U[i]`` (cosine), computed in
   blocks of rows (memory ``block x d_sae``, never ``d_sae x d_sae``), kept when the cosine is
   above ``min_cosine`` and the candidate is *coarser* (fires more often than ``i``);
2. greedy non-negative pursuit over the candidates: repeatedly take the candidate that best
   explains what is left of ``U[i]`` (largest cosine with the residual) while that cosine stays
   above ``min_cosine``; the coefficients are refitted by non-negative least squares after every
   pick.  A parent's own row explains the shared direction better than a sibling's (which holds
   the parent *plus* another child), so the parent is picked first, and the sibling then has
   nothing left to explain.

``min_cosine`` defaults to :func:`random_coherence` ``= sqrt(4 ln(d_sae) / d_in)``, the largest
cosine expected between two of ``d_sae`` random directions in ``d_in`` dimensions, so that
chance coherence of a high-dimensional dictionary is never read as composition.

The rows are kept acyclic by construction: a link always goes to a strictly coarser latent
(firing count, ties to the smaller index).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ._activations import ENCODE_ELEMENTS, iter_checked_batches

#: Normalisations whose ``decode`` is not affine in the code (per-row state).
_STATEFUL_NORMS = ("constant_norm_rescale", "layer_norm")
_FORMAT = "sae-causal-selection-code"
_VERSION = 1


def random_coherence(d_sae: int, d_in: int) -> float:
    """Largest |cos| expected among ``d_sae`` random unit vectors in ``d_in`` dimensions.

    ``sqrt(4 ln(d_sae) / d_in)`` (the maximum of ``d_sae**2 / 2`` Gaussian cosines of variance
    ``1 / d_in``), capped at 0.95.
    """
    return min(0.95, math.sqrt(4.0 * math.log(max(d_sae, 2)) / d_in))


# ----------------------------------------------------------------------------- pure maths
def nearest_rows(
    U: Float[Tensor, "d_sae d_in"], n_candidates: int, *, block: int = 512
) -> tuple[Int[Tensor, "d_sae m"], Float[Tensor, "d_sae m"]]:
    """For each row, the ``n_candidates`` other rows with the largest cosine (blockwise)."""
    d_sae = U.shape[0]
    m = max(1, min(n_candidates, d_sae - 1))
    idx = torch.empty(d_sae, m, dtype=torch.int64, device=U.device)
    val = torch.empty(d_sae, m, dtype=U.dtype, device=U.device)
    for s in range(0, d_sae, block):
        cos = U[s : s + block] @ U.T
        rows = torch.arange(s, min(s + block, d_sae), device=U.device)
        cos[rows - s, rows] = -math.inf
        v, i = cos.topk(m, dim=1)
        idx[s : s + block], val[s : s + block] = i, v
    return idx, val


def _nnls(G: Tensor, b: Tensor, iters: int = 200) -> Tensor:
    """Non-negative least squares ``min |X w - y|^2, w >= 0`` from ``G = X X^T``, ``b = X y``."""
    k = G.shape[0]
    if k == 1:
        return (b / G[0, 0].clamp(min=1e-12)).clamp(min=0)
    w = torch.linalg.lstsq(G, b.unsqueeze(1)).solution.squeeze(1)
    if bool((w >= 0).all()):
        return w
    step = 1.0 / float(torch.linalg.eigvalsh(G).max().clamp(min=1e-12))
    w = w.clamp(min=0)
    for _ in range(iters):
        w = (w - step * (G @ w - b)).clamp(min=0)
    return w


def pursue_parents(
    u: Float[Tensor, " d_in"],
    candidates: Float[Tensor, "m d_in"],
    *,
    min_cosine: float,
    max_parents: int,
) -> tuple[list[int], list[float]]:
    """Greedy non-negative pursuit of unit row ``u`` over unit ``candidates`` (module docstring).

    Returns the picked candidate positions and their non-negative weights.
    """
    picked: list[int] = []
    weights = torch.zeros(0, dtype=u.dtype, device=u.device)
    residual = u
    while len(picked) < max_parents:
        r_norm = residual.norm()
        if float(r_norm) < 1e-6:
            break
        score = candidates @ residual / r_norm
        if picked:
            score[picked] = -math.inf
        best = int(score.argmax())
        if float(score[best]) < min_cosine:
            break
        trial = picked + [best]
        X = candidates[trial]
        w = _nnls(X @ X.T, X @ u)
        if float(w[-1]) <= 0:
            break
        picked, weights = trial, w
        residual = u - w @ X
    keep = [j for j, wj in enumerate(weights.tolist()) if wj > 0]
    return [picked[j] for j in keep], [float(weights[j]) for j in keep]


def find_composition(
    U: Float[Tensor, "d_sae d_in"],
    firing_counts: Tensor,
    *,
    min_cosine: float,
    max_parents: int = 4,
    n_candidates: int = 16,
    block: int = 512,
) -> tuple[Int[Tensor, " n"], Int[Tensor, " n"], Float[Tensor, " n"]]:
    """The composition matrix ``A`` as ``(child, parent, weight)`` lists (module docstring).

    ``U`` must have unit rows; ``firing_counts`` orders latents from fine (rare) to coarse.
    Latents that never fired take part neither as children nor as parents.
    """
    counts = firing_counts.to(torch.float64).cpu()
    d_sae = U.shape[0]
    nn_idx, nn_cos = nearest_rows(U, n_candidates, block=block)
    nn_idx, nn_cos = nn_idx.cpu(), nn_cos.cpu()
    order = counts * (d_sae + 1) - torch.arange(d_sae, dtype=torch.float64)  # ties: smaller index coarser
    children: list[int] = []
    parents: list[int] = []
    weights: list[float] = []
    for i in range(d_sae):
        if counts[i] <= 0:
            continue
        cand = nn_idx[i][(nn_cos[i] >= min_cosine) & (order[nn_idx[i]] > order[i]) & (counts[nn_idx[i]] > 0)]
        if cand.numel() == 0:
            continue
        cand = cand.to(U.device)
        picked, w = pursue_parents(U[i], U[cand], min_cosine=min_cosine, max_parents=max_parents)
        for j, wj in zip(picked, w):
            children.append(i)
            parents.append(int(cand[j]))
            weights.append(wj)
    return (
        torch.tensor(children, dtype=torch.int64),
        torch.tensor(parents, dtype=torch.int64),
        torch.tensor(weights, dtype=torch.float64),
    )


def check_acyclic(children: Tensor, parents: Tensor, d_sae: int, where: str = "A") -> None:
    """Raise ``ValueError`` when the links ``child -> parent`` contain a cycle or bad ids."""
    if children.numel() and (int(children.min()) < 0 or int(max(children.max(), parents.max())) >= d_sae
                             or int(parents.min()) < 0):
        raise ValueError(f"{where}: latent ids must lie in [0, d_sae={d_sae}); the file is corrupt")
    g = nx.DiGraph(list(zip(children.tolist(), parents.tolist())))
    if g.number_of_edges() and not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise ValueError(
            f"{where}: the composition matrix has a cycle {cycle}; it must be acyclic "
            "(links go from finer to coarser latents); refit it with factorize_decoder"
        )


def topological_depth_order(children: Tensor, parents: Tensor) -> list[list[int]]:
    """Link positions grouped so that applying the groups in order propagates ``c (I - A)^-1``.

    Group ``g`` holds the links whose child sits at height ``g`` (0 = no incoming link).
    """
    g = nx.DiGraph(list(zip(children.tolist(), parents.tolist())))
    height: dict[int, int] = {}
    for node in nx.topological_sort(g):  # children before their parents
        preds = list(g.predecessors(node))
        height[node] = 1 + max((height[p] for p in preds), default=-1)
    groups: dict[int, list[int]] = {}
    for pos, c in enumerate(children.tolist()):
        groups.setdefault(height[c], []).append(pos)
    return [groups[h] for h in sorted(groups)]


# ----------------------------------------------------------------------------- SAE glue
def decoder_basis(sae: Any, block: int = 256) -> tuple[Float[Tensor, "d_sae d_in"], Float[Tensor, " d_in"]]:
    """``(D, b)`` with ``sae.decode(z) = z @ D + b`` (checked on dense random codes).

    ``D`` is ``W_dec`` itself when that reproduces ``decode`` (SAELens's SAEs without decoder-norm
    rescaling); otherwise each row is probed as ``decode(e_i) - b`` (``d_sae`` decodes).
    """
    if not callable(getattr(sae, "decode", None)) or getattr(sae, "W_dec", None) is None:
        raise ValueError(
            f"sae must be an SAE with a decoder (W_dec and decode), got {type(sae).__name__}; "
            "pass a SAELens SAE or TrainingSAE"
        )
    norm = getattr(getattr(sae, "cfg", None), "normalize_activations", "none")
    if norm in _STATEFUL_NORMS:
        raise ValueError(
            f"sae: normalize_activations={norm!r} decodes with per-row state, so the decoder is not "
            "one matrix; factorise an SAE trained with 'none' or 'expected_average_only_in'"
        )
    W = sae.W_dec
    d_sae = W.shape[0]
    with torch.no_grad():
        b = sae.decode(torch.zeros(1, d_sae, dtype=W.dtype, device=W.device))[0]
        # dense random codes: a decode that differs from z @ D + b in any row shows up in every one
        z = torch.rand(4, d_sae, dtype=W.dtype, device=W.device)
        decoded = sae.decode(z)
        D = W.detach()
        if not _reproduces(decoded, z @ D + b, D):  # not the plain W_dec: probe decode row by row
            parts = []
            for s in range(0, d_sae, block):
                n = min(block, d_sae - s)
                basis = torch.zeros(n, d_sae, dtype=W.dtype, device=W.device)
                basis[torch.arange(n), torch.arange(s, s + n)] = 1.0
                parts.append(sae.decode(basis) - b)
            D = torch.cat(parts)
            if not _reproduces(decoded, z @ D + b, D):
                raise ValueError("sae: decode is not affine in the code, so it cannot be factorised")
    return D, b


def _reproduces(decoded: Tensor, affine: Tensor, D: Tensor) -> bool:
    scale = float(D.abs().max()) * max(1.0, D.shape[0] ** 0.5)
    return bool(torch.allclose(decoded, affine, rtol=1e-4, atol=1e-5 * scale))


class _Config:
    """The two fields of an SAE config that graph recovery and steering read."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        self.d_in, self.d_sae = d_in, d_sae
        self.normalize_activations = "none"


class SelectionCode:
    """An SAE seen through its decoder factorisation ``U = A U + R`` (module docstring).

    * :meth:`encode` ``x -> c' = (sae.encode(x) * norms) (I - A)^-1``;
    * :meth:`decode` ``c' -> c' R + b``, exactly ``sae.decode(sae.encode(x))``;
    * ``A`` (:attr:`children`, :attr:`parents`, :attr:`weights`, or :meth:`composition_matrix`)
      and the atoms :attr:`atoms` ``= R`` (also :attr:`W_dec`, so graph recovery and
      ``steer_activations`` take a ``SelectionCode`` wherever they take an SAE).

    Ablating latent ``p`` of the selection code removes its atom wherever it is present,
    inside the children that absorbed it too.
    """

    def __init__(
        self,
        sae: Any,
        children: Tensor,
        parents: Tensor,
        weights: Tensor,
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        D, b = decoder_basis(sae)
        d_sae, d_in = D.shape
        children, parents = children.to(torch.int64).cpu(), parents.to(torch.int64).cpu()
        weights = weights.to(torch.float64).cpu()
        if not (children.shape == parents.shape == weights.shape) or children.ndim != 1:
            raise ValueError("children, parents and weights must be 1-D tensors of one length")
        if weights.numel() and not (bool(torch.isfinite(weights).all()) and float(weights.min()) >= 0):
            raise ValueError("weights: the composition matrix must be finite and non-negative")
        check_acyclic(children, parents, d_sae)
        self.sae = sae
        self.cfg = _Config(d_in, d_sae)
        self.children, self.parents, self.weights = children, parents, weights
        self.meta: dict[str, Any] = dict(meta or {})
        self.norms = D.norm(dim=1)
        U = D / self.norms.clamp(min=1e-12).unsqueeze(1)
        dev, dt = D.device, D.dtype
        self._c, self._p = children.to(dev), parents.to(dev)
        self._w = weights.to(device=dev, dtype=dt)
        atoms = U.clone()
        atoms.index_add_(0, self._c, -self._w.unsqueeze(1) * U[self._p])
        self.atoms: Float[Tensor, "d_sae d_in"] = atoms
        self.bias: Float[Tensor, " d_in"] = b
        self._groups = [torch.tensor(g, device=dev) for g in topological_depth_order(children, parents)] \
            if children.numel() else []

    @property
    def W_dec(self) -> Float[Tensor, "d_sae d_in"]:
        return self.atoms

    @property
    def n_links(self) -> int:
        return int(self.children.numel())

    def composition_matrix(self) -> Float[Tensor, "d_sae d_sae"]:
        """Dense ``A`` (``A[child, parent]``); for small SAEs and tests."""
        d = self.cfg.d_sae
        A = torch.zeros(d, d, dtype=torch.float64)
        A[self.children, self.parents] = self.weights
        return A

    def lift(self, codes: Float[Tensor, "n d_sae"]) -> Float[Tensor, "n d_sae"]:
        """``c -> c' = (c * norms) (I - A)^-1`` (propagated child -> parent, level by level)."""
        codes = codes.to_dense() if codes.is_sparse else codes
        out = codes.to(self.atoms.dtype) * self.norms
        for g in self._groups:  # children of group g are final once the groups below are applied
            c, p, w = self._c[g], self._p[g], self._w[g]
            out.index_add_(1, p, out[:, c] * w)
        return out

    def unlift(self, lifted: Float[Tensor, "n d_sae"]) -> Float[Tensor, "n d_sae"]:
        """Inverse of :meth:`lift`: ``c' -> c = c' (I - A) / norms``."""
        out = lifted.clone()
        out.index_add_(1, self._p, -lifted[:, self._c] * self._w)
        return out / self.norms.clamp(min=1e-12)

    def encode(self, x: Float[Tensor, "n d_in"]) -> Float[Tensor, "n d_sae"]:
        return self.lift(self.sae.encode(x))

    def decode(self, lifted: Float[Tensor, "n d_sae"]) -> Float[Tensor, "n d_in"]:
        return lifted.to(self.atoms.dtype) @ self.atoms + self.bias

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path) -> Path:
        """Write ``selection_code.safetensors`` (links) and ``selection_code.json`` (shape, meta)
        into the folder ``path``, atomically (a failure leaves no half-written file)."""
        from safetensors.torch import save_file

        from sae_causal_plugin._files import staged_dir

        target = Path(path)
        header = {"format": _FORMAT, "version": _VERSION, "d_in": self.cfg.d_in,
                  "d_sae": self.cfg.d_sae, "n_links": self.n_links, "meta": self.meta}
        with staged_dir(target) as stage:
            save_file({"children": self.children.contiguous(), "parents": self.parents.contiguous(),
                       "weights": self.weights.contiguous()}, str(stage / "selection_code.safetensors"))
            (stage / "selection_code.json").write_text(json.dumps(header, indent=2))
        return target

    @classmethod
    def load(cls, path: str | Path, sae: Any) -> SelectionCode:
        """Read a folder written by :meth:`save` for ``sae`` (shape checked; never unpickles)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(path)
        head_file, data_file = folder / "selection_code.json", folder / "selection_code.safetensors"
        for f in (head_file, data_file):
            if not f.is_file():
                raise ValueError(f"{f}: missing; pass a folder written by SelectionCode.save")
        try:
            header = json.loads(head_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{head_file}: not valid JSON ({err.msg if hasattr(err, 'msg') else err}); "
                             "rewrite it with SelectionCode.save") from None
        if not isinstance(header, dict) or header.get("format") != _FORMAT or header.get("version") != _VERSION:
            raise ValueError(f"{head_file}: not a selection code of format {_FORMAT!r} version {_VERSION}")
        d_in, d_sae = int(getattr(sae.cfg, "d_in", -1)), int(getattr(sae.cfg, "d_sae", -1))
        if (header.get("d_in"), header.get("d_sae")) != (d_in, d_sae):
            raise ValueError(
                f"sae: the selection code in {folder} was fitted to an SAE with d_in={header.get('d_in')}, "
                f"d_sae={header.get('d_sae')}, but this SAE has d_in={d_in}, d_sae={d_sae}; "
                "load it with the SAE it was fitted to, or refit with factorize_decoder"
            )
        try:
            data = load_file(str(data_file))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{data_file}: unreadable safetensors file ({err}); "
                             "rewrite it with SelectionCode.save") from None
        if set(data) != {"children", "parents", "weights"}:
            raise ValueError(f"{data_file}: expected tensors children, parents, weights, got {sorted(data)}")
        try:
            check_acyclic(data["children"], data["parents"], d_sae, where=str(data_file))
        except ValueError:
            raise
        return cls(sae, data["children"], data["parents"], data["weights"], meta=header.get("meta"))


def _rows(activations: Tensor | Iterable[Tensor], d_in: int, max_rows: int) -> Iterator[Tensor]:

    seen = 0
    for chunk in iter_checked_batches(activations, d_in, 4096):
        yield chunk[: max_rows - seen]
        seen += chunk.shape[0]
        if seen >= max_rows:
            return


def firing_counts_of(sae: Any, activations: Tensor | Iterable[Tensor], max_rows: int = 65536,
                     encode_elements: int = ENCODE_ELEMENTS) -> Tensor:
    """How often each latent fires on (at most ``max_rows`` rows of) ``activations``.

    Encodes at most ``encode_elements / d_sae`` rows at a time (default: an 8 MiB float32 code),
    as :func:`~.recovery.accumulate_cofiring` does, so a wide SAE's dense codes stay small.
    """
    d_sae, d_in = int(sae.cfg.d_sae), int(sae.cfg.d_in)
    step = max(1, encode_elements // d_sae)
    counts = torch.zeros(d_sae, dtype=torch.int64)
    with torch.no_grad():
        for chunk in _rows(activations, d_in, max_rows):
            for s in range(0, chunk.shape[0], step):
                codes = sae.encode(chunk[s : s + step].to(sae.W_dec.device))
                codes = codes.to_dense() if codes.is_sparse else codes
                counts += torch.bincount((codes != 0).nonzero(as_tuple=True)[1], minlength=d_sae).cpu()
    return counts


def factorize_decoder(
    sae: Any,
    activations: Tensor | Iterable[Tensor] | None = None,
    *,
    firing_counts: Tensor | None = None,
    min_cosine: float | None = None,
    max_parents: int = 4,
    n_candidates: int = 16,
    max_rows: int = 65536,
) -> SelectionCode:
    """Factorise ``sae``'s decoder as ``U = A U + R`` (module docstring) and return its
    :class:`SelectionCode`.

    Args:
        sae: any SAELens SAE with an affine decode (BatchTopK, TopK, JumpReLU, Matryoshka,
            standard, ours; loaded from disk or not).
        activations: a tensor ``[n, d_in]`` or an iterable of batches; at most ``max_rows``
            rows are read, once, to count how often each latent fires (finer latents fire less
            often, which orients the links).  Not needed when ``firing_counts`` is given.
        firing_counts: ``[d_sae]`` firing counts, instead of ``activations``.
        min_cosine: smallest cosine of a link (and of every pursuit step); default
            :func:`random_coherence` of ``d_sae`` and ``d_in``.
        max_parents: at most this many parents per latent.
        n_candidates: nearest decoder rows considered per latent.
    """
    if getattr(sae, "W_dec", None) is None or getattr(sae, "cfg", None) is None:
        raise ValueError(
            f"sae must be an SAE with a decoder (W_dec) and cfg, got {type(sae).__name__}"
        )
    d_sae, d_in = int(sae.cfg.d_sae), int(sae.cfg.d_in)
    if min_cosine is None:
        min_cosine = random_coherence(d_sae, d_in)
    if not isinstance(min_cosine, (int, float)) or not 0.0 <= float(min_cosine) <= 1.0:
        raise ValueError(f"min_cosine must lie in [0, 1], got {min_cosine!r}; leave it None for the default")
    for name, value in (("max_parents", max_parents), ("n_candidates", n_candidates), ("max_rows", max_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    D, _ = decoder_basis(sae)
    if firing_counts is None:
        if activations is None:
            raise ValueError("pass activations (to count firings) or firing_counts")
        firing_counts = firing_counts_of(sae, activations, max_rows)
    elif tuple(firing_counts.shape) != (d_sae,):
        raise ValueError(f"firing_counts must have shape ({d_sae},), got {tuple(firing_counts.shape)}")
    with torch.no_grad():
        U = D / D.norm(dim=1, keepdim=True).clamp(min=1e-12)
        children, parents, weights = find_composition(
            U.float(), firing_counts, min_cosine=float(min_cosine), max_parents=max_parents,
            n_candidates=n_candidates)
    meta = {"min_cosine": float(min_cosine), "max_parents": max_parents, "n_candidates": n_candidates}
    return SelectionCode(sae, children, parents, weights, meta=meta)


__all__ = [
    "SelectionCode",
    "factorize_decoder",
    "find_composition",
    "pursue_parents",
    "nearest_rows",
    "random_coherence",
    "decoder_basis",
    "firing_counts_of",
]
