"""The report's latent browser: one row per latent (plain values for the template) and the concepts x
latents firing heat map (a PNG drawn with matplotlib's Agg backend, no pyplot state)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sae_causal_plugin.worlds.run import LatentEntry

#: the heat map's file in the report folder.
HEATMAP = "latent_firing.png"


def browser_rows(entries: Sequence[LatentEntry], stage: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Template rows, matched latents first (by firing F1), then the others by firing rate.

    Image contexts are copied into ``stage / "latents"``; a relative image path is read relative to
    ``out_dir``."""
    ordered = sorted(entries, key=lambda e: (e.summary.concept is None, -(e.summary.firing_f1 or 0.0),
                                            -e.summary.firing_rate, e.summary.latent))
    rows = []
    for k, entry in enumerate(ordered):  # file names by row: latent indices repeat across SAEs
        s = entry.summary
        texts, images = [], []
        for i, context in enumerate(entry.contexts):
            if isinstance(context, Path):
                images.append(copy_image(context, stage, out_dir, Path("latents") / f"row{k}_{i}",
                                         "latent browser"))
            else:
                before, token, after = context
                texts.append({"before": before, "token": token, "after": after})
        rows.append({"name": entry.name or f"#{s.latent}", "concept": s.concept or "",
                     "firing_f1": s.firing_f1, "firing_rate": s.firing_rate, "decoder_norm": s.decoder_norm,
                     "parents": ", ".join(s.parents), "children": ", ".join(s.children),
                     "texts": texts, "images": images})
    return rows


def copy_image(path: Path, stage: Path, out_dir: Path, rel: Path, what: str) -> str:
    """Copy the image ``path`` (relative paths read from ``out_dir``) to ``stage / rel``; return ``rel``
    as a link.  ``what`` names the image's owner in the error of a missing file."""
    source = path if path.is_absolute() else out_dir / path
    if not source.is_file():
        raise ValueError(f"{what}: image {source} does not exist")
    rel = rel.with_suffix(source.suffix or ".png")
    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, stage / rel)
    return rel.as_posix()


def draw_heatmap(concept_firing: Mapping[str, Mapping[str, float]], path: Path, *, max_latents: int = 80) -> None:
    """Concepts (rows) x latents (columns) coloured by firing F1; the ``max_latents`` latents with the
    highest best F1 are shown, ordered by the concept they fire on best."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    concepts = list(concept_firing)
    latents = sorted({name for row in concept_firing.values() for name in row})
    if not concepts or not latents:
        raise ValueError("concept_firing is empty: give {concept: {latent: F1}} with at least one pair")
    best = {n: max(concept_firing[c].get(n, 0.0) for c in concepts) for n in latents}
    shown = sorted(latents, key=lambda n: -best[n])[:max_latents]
    home = {n: max(range(len(concepts)), key=lambda j: concept_firing[concepts[j]].get(n, 0.0)) for n in shown}
    shown.sort(key=lambda n: (home[n], -best[n]))
    values = [[concept_firing[c].get(n, 0.0) for n in shown] for c in concepts]
    fig = Figure(figsize=(min(30.0, 2.0 + 0.22 * len(shown)), 1.5 + 0.22 * len(concepts)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(len(shown)), shown, rotation=90, fontsize=7)
    ax.set_yticks(range(len(concepts)), concepts, fontsize=7)
    ax.set_xlabel("latent")
    ax.set_ylabel("true concept")
    what = f"{len(shown)} of {len(latents)} latents" if len(shown) < len(latents) else f"{len(latents)} latents"
    ax.set_title(f"Firing F1 of each latent against each concept's presence ({what})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="firing F1")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
