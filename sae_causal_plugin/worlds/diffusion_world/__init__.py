"""Diffusion toy world: 16x16 scenes from a known concept hierarchy, a tiny trained denoiser,
rule-based concept detectors, and a concept graph across denoising timesteps.

* :mod:`.concepts`: the eight concepts (house, tree / chimney, window, apples / smoke, flowers,
  basket), their child -> parent hierarchy (:func:`true_graph`), label vectors and sampling.
* :mod:`.scenes`: the generator, label vectors -> images (:func:`render`, :func:`sample_scenes`).
* :mod:`.detectors`: exact pixel-colour rules that read every concept off an image
  (:func:`detect_concepts`).
* :mod:`.model`: the concept-conditioned ``UNet2DConditionModel`` (concepts enter through the mid
  block's cross-attention only), its DDIM pipeline and the shipped weights
  (:func:`load_pretrained`).
* :mod:`.train`: how the shipped weights were trained (``scripts/train_diffusion_world.py``).
* :mod:`.experiment`: the whole experiment, :func:`run_experiment` (a :class:`DiffusionWorldConfig` in,
  a :class:`DiffusionWorldResult` out; the ``diffusion-world`` bench prints its figures).
* :mod:`.timestep_graph`: per-image co-firing of per-timestep SAE latents, the layered
  child -> parent graph across timesteps and its edge F1 against the true hierarchy.

Example:
    >>> from sae_causal_plugin.worlds import diffusion_world as dw
    >>> pipe = dw.load_pretrained()
    >>> images = pipe(dw.labels(["house", "chimney", "smoke"]), num_inference_steps=20)
    >>> dw.concept_names(dw.detect_concepts(images)[0])
    ['house', 'chimney', 'smoke']
"""

from sae_causal_plugin.worlds.diffusion_world.concepts import (
    CONCEPT_INDEX,
    CONCEPTS,
    DEFAULT_STRENGTH,
    DESCRIPTION,
    LEVELS,
    N_CLASSES,
    N_CONCEPTS,
    PARENT,
    STRENGTH_RANGE,
    all_classes,
    ancestors,
    as_strengths,
    check_concept,
    check_labels,
    children,
    class_index,
    descendants,
    is_valid,
    labels,
    sample_labels,
    sample_strengths,
    true_edges,
    true_graph,
)
from sae_causal_plugin.worlds.diffusion_world.concepts import names as concept_names
from sae_causal_plugin.worlds.diffusion_world.detectors import detect_concepts
from sae_causal_plugin.worlds.diffusion_world.experiment import (
    DiffusionWorldConfig,
    DiffusionWorldResult,
    run_experiment,
)
from sae_causal_plugin.worlds.diffusion_world.model import (
    HOOK,
    ConceptEmbedding,
    DiffusionWorldPipeline,
    build_denoiser,
    build_scheduler,
    load_pretrained,
    save_pretrained,
)
from sae_causal_plugin.worlds.diffusion_world.run import run_diffusion_world
from sae_causal_plugin.worlds.diffusion_world.scenes import (
    PALETTE,
    from_model,
    render,
    sample_scenes,
    to_model,
)

__all__ = [
    "CONCEPTS",
    "CONCEPT_INDEX",
    "ConceptEmbedding",
    "DEFAULT_STRENGTH",
    "DESCRIPTION",
    "DiffusionWorldConfig",
    "DiffusionWorldPipeline",
    "DiffusionWorldResult",
    "HOOK",
    "LEVELS",
    "N_CLASSES",
    "N_CONCEPTS",
    "PALETTE",
    "PARENT",
    "STRENGTH_RANGE",
    "all_classes",
    "ancestors",
    "as_strengths",
    "build_denoiser",
    "build_scheduler",
    "check_concept",
    "check_labels",
    "children",
    "class_index",
    "concept_names",
    "descendants",
    "detect_concepts",
    "from_model",
    "is_valid",
    "labels",
    "load_pretrained",
    "render",
    "run_diffusion_world",
    "run_experiment",
    "sample_labels",
    "sample_scenes",
    "sample_strengths",
    "save_pretrained",
    "to_model",
    "true_edges",
    "true_graph",
]
