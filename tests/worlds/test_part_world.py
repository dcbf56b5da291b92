"""Part-whole world: the DAG, layouts, drawing, masks, detectors, the denoiser's interface."""

import pytest
import torch

from sae_causal_plugin.worlds.part_world.concepts import (
    CONCEPT_INDEX, CONCEPTS, LEVELS, PARENTS, Layout, check_layout, descendants, level, sample_layout, true_edges,
)
from sae_causal_plugin.worlds.part_world.detectors import detect_concepts, detected_masks, layer_pixels, unknown_fraction
from sae_causal_plugin.worlds.part_world.model import ConceptTokens, PartWorldPipeline, build_denoiser, strengths_of
from sae_causal_plugin.worlds.part_world.scenes import PALETTE, composite, concept_masks, render, sample_scenes


def test_the_dag_has_three_levels_twenty_concepts_and_shared_parts():
    assert len(CONCEPTS) >= 20 and len(LEVELS) == 3 and all(LEVELS)
    shared = [c for c, ps in PARENTS.items() if len(ps) > 1]
    assert set(shared) == {"window", "nest"}
    assert all(level(p) == level(c) - 1 for c, p in true_edges())
    assert descendants("house") == {"roof", "wall", "chimney", "nest", "door", "window"}
    with pytest.raises(ValueError, match="unknown concept"):
        level("dog")


def test_layouts_follow_the_selection_rule_and_positions_vary():
    layout = sample_layout(3000, torch.Generator().manual_seed(0))
    check_layout(layout)
    lab = layout.labels
    assert torch.equal(lab[:, :4].sum(1), torch.ones(3000, dtype=torch.long))
    for c, ps in PARENTS.items():
        if ps:
            assert bool((~lab[:, CONCEPT_INDEX[c]] | lab[:, [CONCEPT_INDEX[p] for p in ps]].any(1)).all())
    eyes = layout.offset[lab[:, CONCEPT_INDEX["eyes"]], CONCEPT_INDEX["eyes"]]
    assert len({tuple(o) for o in eyes.tolist()}) == 3 and len({tuple(o) for o in layout.origin.tolist()}) == 9


def test_masks_nest_parts_inside_regions_inside_wholes():
    _, layout = sample_scenes(500, seed=1)
    masks = concept_masks(layout)
    for c, p in true_edges():
        child, parent = masks[:, CONCEPT_INDEX[c]], masks[:, CONCEPT_INDEX[p]]
        both = layout.labels[:, CONCEPT_INDEX[c]] & layout.labels[:, CONCEPT_INDEX[p]]
        assert bool((child[both] <= parent[both]).all())
    assert bool((masks.flatten(2).any(2) == layout.labels).all())


def test_detectors_read_drawn_scenes_exactly():
    images, layout = sample_scenes(1000, seed=2)
    assert images.shape == (1000, len(CONCEPTS), 16, 16) and set(images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(detect_concepts(images), layout.labels)
    assert torch.equal(detected_masks(images), concept_masks(layout))
    assert float(unknown_fraction(images).max()) == 0.0
    noisy = (images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
             ).clamp(0, 1)
    keep = (noisy - images).abs() < 0.5
    assert bool((layer_pixels(noisy) == layer_pixels(images))[keep].all())
    blank = torch.zeros(1, len(CONCEPTS), 16, 16)
    assert not detect_concepts(blank).any()
    three = blank.clone()
    three[0, CONCEPT_INDEX["eyes"], :1, :3] = 1.0  # 3 on pixels: a part is there
    assert detect_concepts(three)[0].nonzero().flatten().tolist() == [CONCEPT_INDEX["eyes"]]
    three[0, CONCEPT_INDEX["eyes"], 0, 0] = 0.4  # 2 on pixels: not
    assert not detect_concepts(three).any()
    assert float(unknown_fraction(three)) == pytest.approx(1 / (len(CONCEPTS) * 256))
    with pytest.raises(ValueError, match=r"\[B, 22, H, W\]"):
        detect_concepts(torch.ones(2, 3, 16, 16))


def test_the_composite_paints_each_concept_in_its_colour_over_its_parents():
    images, layout = sample_scenes(200, seed=4)
    rgb = composite(images)
    assert rgb.shape == (200, 3, 16, 16) and torch.equal(composite(images[0]), rgb[:1])
    masks = concept_masks(layout)
    eyes = layout.labels[:, CONCEPT_INDEX["eyes"]]
    b = int(eyes.nonzero()[0])
    r, c = (int(v) for v in masks[b, CONCEPT_INDEX["eyes"]].nonzero()[0])
    assert rgb[b, :, r, c].tolist() == list(PALETTE["eyes"])  # the part is painted over its region and whole
    outside = ~masks[b].any(0)
    assert bool((rgb[b][:, outside] == 1.0).all())  # white background


def test_bad_layouts_are_refused():
    layout = sample_layout(4, torch.Generator().manual_seed(0))
    lab = layout.labels.clone()
    lab[0, :4] = False
    with pytest.raises(ValueError, match="exactly one whole"):
        check_layout(Layout(lab, layout.origin, layout.offset))
    lab = layout.labels.clone()
    lab[:, CONCEPT_INDEX["eyes"]] = True
    lab[:, CONCEPT_INDEX["upper_face"]] = False
    with pytest.raises(ValueError, match="'eyes' is present without"):
        render(Layout(lab, layout.origin, layout.offset))
    with pytest.raises(ValueError, match="labels must be bool"):
        check_layout(Layout(layout.labels.float(), layout.origin, layout.offset))


def test_the_denoiser_takes_one_token_per_concept_and_samples_scenes():
    tokens = ConceptTokens(seed=0)
    labels = sample_layout(3, torch.Generator().manual_seed(0)).labels
    cond = tokens(strengths_of(labels))
    assert cond.shape == (3, len(CONCEPTS) + 1, 32)
    absent = ~labels[0]
    assert bool((cond[0, : len(CONCEPTS)][absent] == 0).all())
    pipe = PartWorldPipeline(build_denoiser(seed=0), tokens)
    images = pipe(labels, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, len(CONCEPTS), 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1
    with pytest.raises(ValueError, match=r"labels must be \[B, 22\]"):
        pipe(torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="latents must have shape"):
        pipe(labels, latents=torch.zeros(3, 3, 8, 8))


def test_the_shipped_denoiser_loads_draws_and_stays_small():
    from sae_causal_plugin.worlds.part_world.model import WEIGHTS_FILE, assets_dir, load_pretrained

    assert (assets_dir() / WEIGHTS_FILE).stat().st_size <= 5 * 2**20
    pipe = load_pretrained()
    labels = sample_layout(8, torch.Generator().manual_seed(3)).labels
    images = pipe(labels, generator=torch.Generator().manual_seed(0))
    detected = detect_concepts(images)
    assert detected.equal(labels)  # every concept drawn as asked (read-back 1.00 over 400 scenes)
    with pytest.raises(FileNotFoundError, match="train_part_world.py"):
        load_pretrained("/nonexistent/folder")


def test_the_probe_ceiling_recovers_the_true_graph_from_features_that_hold_the_masks():
    from sae_causal_plugin.worlds.part_world.experiment import PartWorldConfig, probe_ceiling, token_masks

    masks = token_masks(sample_layout(600, torch.Generator().manual_seed(3)))
    g = torch.Generator().manual_seed(4)
    mix = torch.randn(len(CONCEPTS), 16, generator=g)
    feats = masks.flatten(0, 1).float() @ mix + 0.05 * torch.randn(masks.shape[0] * masks.shape[1], 16, generator=g)
    ceiling = probe_ceiling({901: feats, 501: feats, 101: feats}, masks, 400, PartWorldConfig())
    assert ceiling["heatmap_iou"] >= 0.9 and ceiling["edge_f1"] >= 0.9, ceiling
    noise = torch.randn(feats.shape, generator=g)  # features without the masks: no graph
    assert probe_ceiling({901: noise, 501: noise, 101: noise}, masks, 400, PartWorldConfig(probe_steps=100))["edge_f1"] < 0.5


def test_probes_refuse_mismatched_rows_and_too_many_levels():
    from sae_causal_plugin.worlds.part_world.probe import fit_probes, probe_firing

    with pytest.raises(ValueError, match="train_masks"):
        fit_probes(torch.zeros(10, 4), torch.zeros(9, 2, dtype=torch.bool), torch.zeros(3, 4))
    masks = torch.zeros(4, 256, len(CONCEPTS), dtype=torch.bool)
    with pytest.raises(ValueError, match="at most"):
        probe_firing({t: torch.zeros(4 * 256, 8) for t in (901, 701, 501, 101)}, masks, 2)


def test_the_part_world_demo_draws_the_heatmap_graph_and_three_steering_grids(tmp_path):
    from sae_causal_plugin.report import write_report
    from sae_causal_plugin.worlds.part_world.run import run_part_world

    run = run_part_world(0, out_dir=tmp_path, progress=False, train_images=32, eval_images=32, sae_steps=30,
                         probe_steps=30,
                         sae_batch=256, n_samples=2, num_inference_steps=4, min_iou=0.1, graph={"min_support": 2})
    assert len(run.true_graph.edges) == 20 and 0 <= run.metrics["edge_f1"] <= 1
    assert [e.title.split()[0:2] for e in run.steering_examples] == [["remove", "the"], ["add", "the"], ["remove", "the"]]
    assert len(run.figures) == 1 and run.figures[0][1].read_bytes()[:4] == b"\x89PNG"
    index = write_report(run, tmp_path / "report")
    page = index.read_text()
    assert 'src="figures/0.png"' in page and (tmp_path / "report" / "figures" / "0.png").is_file()
    assert page.count("src='steering/") == 6
    with pytest.raises(ValueError, match="unknown options"):
        run_part_world(0, out_dir=tmp_path, progress=False, sae_stepz=3)


def test_layer_loss_weights_favour_the_small_layers_and_refuse_bad_powers():
    from sae_causal_plugin.worlds.part_world.train import layer_loss_weights

    w = layer_loss_weights(1.0).flatten()
    assert w.shape == (len(CONCEPTS),) and float(w.mean()) == pytest.approx(1.0)
    assert float(w[CONCEPT_INDEX["eyes"]]) > 20 * float(w[CONCEPT_INDEX["face"]])
    assert torch.allclose(layer_loss_weights(0.0), torch.ones(1, len(CONCEPTS), 1, 1))
    with pytest.raises(ValueError, match="layer_weighting must lie in"):
        layer_loss_weights(-1.0)
