"""The diffusion toy world: concepts, generator, detectors, shipped denoiser, timestep graph."""

from __future__ import annotations

import pytest
import torch

from sae_causal_plugin.graph import ConceptGraph, recover_timestep_graph
from sae_causal_plugin.worlds import diffusion_world as dw
from sae_causal_plugin.worlds.diffusion_world import detectors, timestep_graph
from sae_causal_plugin.worlds.diffusion_world.concepts import class_probabilities


pytestmark = pytest.mark.usefixtures("one_thread")


# --- hand-drawn images ---------------------------------------------------------------------------
def _canvas() -> torch.Tensor:
    img = torch.empty(3, 16, 16)
    img[:] = torch.tensor(dw.PALETTE["sky"])[:, None, None]
    img[:, 13:] = torch.tensor(dw.PALETTE["grass"])[:, None, None]
    return img


def _fill(img: torch.Tensor, rows: range, cols: range, colour: str) -> None:
    img[:, rows.start : rows.stop, cols.start : cols.stop] = torch.tensor(dw.PALETTE[colour])[
        :, None, None
    ]


def _house(img: torch.Tensor, left: int = 3) -> None:
    _fill(img, range(8, 13), range(left, left + 9), "wall")
    for i in range(4):  # a stepped roof drawn by hand, wider than the renderer's
        _fill(img, range(4 + i, 5 + i), range(left + 2 - i, left + 7 + i), "roof")


def _tree(img: torch.Tensor, left: int = 5) -> None:
    _fill(img, range(9, 13), range(left + 2, left + 3), "trunk")  # one pixel wide, 4 tall
    _fill(img, range(2, 9), range(left, left + 5), "crown")  # a square crown


def _hand_drawn() -> list[tuple[torch.Tensor, set[str]]]:
    cases = []
    img = _canvas()
    _house(img)
    cases.append((img, {"house"}))

    img = _canvas()
    _house(img, left=5)
    _fill(img, range(1, 6), range(6, 8), "chimney")  # tall chimney on the left
    _fill(img, range(10, 12), range(7, 9), "window")
    cases.append((img, {"house", "chimney", "window"}))

    img = _canvas()
    _house(img)
    _fill(img, range(2, 5), range(9, 11), "chimney")
    _fill(img, range(0, 2), range(11, 14), "smoke")  # smoke drifting right
    _fill(img, range(9, 11), range(4, 6), "window")
    _fill(img, range(11, 12), range(3, 7), "flowers")  # a long, thin flower box
    cases.append((img, {"house", "chimney", "smoke", "window", "flowers"}))

    img = _canvas()
    _tree(img)
    cases.append((img, {"tree"}))

    img = _canvas()
    _tree(img, left=2)
    _fill(img, range(3, 5), range(3, 5), "apples")
    _fill(img, range(6, 8), range(4, 6), "apples")
    cases.append((img, {"tree", "apples"}))

    img = _canvas()
    _tree(img)
    _fill(img, range(3, 4), range(5, 9), "apples")  # a row of apples
    _fill(img, range(11, 13), range(1, 4), "basket")  # a wide basket far from the trunk
    cases.append((img, {"tree", "apples", "basket"}))

    img = _canvas()  # an empty scene and stray pixels: nothing
    img[:, 0, 0] = torch.tensor(dw.PALETTE["chimney"])
    img[:, 5, 5] = torch.tensor(dw.PALETTE["flowers"])
    img[:, 7, 9] = torch.tensor(dw.PALETTE["basket"])
    cases.append((img, set()))

    img = _canvas()  # smoke with no chimney reads as exactly that
    _fill(img, range(0, 2), range(3, 5), "smoke")
    cases.append((img, {"smoke"}))
    return cases


@pytest.mark.parametrize("case", range(8))
def test_detectors_on_hand_drawn_images(case):
    img, expected = _hand_drawn()[case]
    got = dw.detect_concepts(img)
    assert got.shape == (1, dw.N_CONCEPTS)
    assert set(dw.concept_names(got[0])) == expected


def test_detectors_tolerate_small_colour_errors():
    img, expected = _hand_drawn()[2]
    noisy = (img + 0.2 * (torch.rand(img.shape, generator=torch.Generator().manual_seed(0)) - 0.5)).clamp(0, 1)
    assert set(dw.concept_names(dw.detect_concepts(noisy)[0])) == expected
    assert float(detectors.unknown_fraction(noisy)) == 0.0


# --- the generator -------------------------------------------------------------------------------
def test_every_class_at_every_offset_reads_back_exactly():
    classes = dw.all_classes()
    assert classes.shape == (dw.N_CLASSES, dw.N_CONCEPTS) == (12, 8)
    for dx in range(-2, 3):
        assert torch.equal(dw.detect_concepts(dw.render(classes, dx=dx)), classes)


def test_sampled_scenes_match_their_labels():
    images, labels = dw.sample_scenes(512, seed=3, noise=0.05)
    assert images.shape == (512, 3, 16, 16) and 0 <= float(images.min()) <= float(images.max()) <= 1
    assert bool(dw.is_valid(labels).all())
    assert torch.equal(dw.detect_concepts(images), labels)
    rates = labels.float().mean(0)
    assert abs(float(rates[dw.CONCEPT_INDEX["house"]]) - 0.5) < 0.07
    assert abs(float(rates[dw.CONCEPT_INDEX["smoke"]]) - 0.125) < 0.05
    assert abs(float(class_probabilities().sum()) - 1) < 1e-9


def test_sampling_is_seeded():
    a, la = dw.sample_scenes(16, seed=7)
    b, lb = dw.sample_scenes(16, seed=7)
    assert torch.equal(a, b) and torch.equal(la, lb)


# --- the true hierarchy ------------------------------------------------------------------------------
def test_true_hierarchy_graph_is_exact():
    g = dw.true_graph()
    assert isinstance(g, ConceptGraph)
    assert set(g.concepts) == set(dw.CONCEPTS)
    assert set(g.edges) == {
        ("chimney", "house"),
        ("window", "house"),
        ("apples", "tree"),
        ("smoke", "chimney"),
        ("flowers", "window"),
        ("basket", "apples"),
    }
    assert g.levels() == {
        "house": 0, "tree": 0, "chimney": 1, "window": 1, "apples": 1,
        "smoke": 2, "flowers": 2, "basket": 2,
    }
    assert g.descendants("house") == {"chimney", "window", "smoke", "flowers"}
    assert dw.descendants("apples") == ["basket"] and dw.ancestors("smoke") == ["chimney", "house"]


def test_labels_from_names_and_mappings():
    lab = dw.labels(["house", "window", "flowers"])
    assert dw.concept_names(lab) == ["house", "window", "flowers"]
    assert torch.equal(lab, dw.labels({"house": True, "window": 1, "flowers": True, "tree": False}))
    assert torch.equal(dw.all_classes()[dw.class_index(lab)], lab)


# --- bad input -----------------------------------------------------------------------------------
def test_unknown_concept_raises():
    with pytest.raises(ValueError, match="unknown concept 'roof'"):
        dw.labels(["house", "roof"])
    with pytest.raises(ValueError, match="unknown concept"):
        dw.descendants("garden")


def test_inconsistent_labels_raise():
    with pytest.raises(ValueError, match="inconsistent concepts"):
        dw.render(dw.labels(["tree", "chimney"]))
    with pytest.raises(ValueError, match="inconsistent concepts"):
        dw.render(dw.labels(["house", "tree"]))
    with pytest.raises(ValueError, match="8 concepts"):
        dw.labels(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="dx"):
        dw.render(dw.labels(["house"]), dx=3)


# --- the timestep graph on plain tensors -------------------------------------------------------------
def test_timestep_graph_recovers_a_planted_hierarchy():
    _, labels = dw.sample_scenes(2000, seed=0)
    lab = labels.bool()
    idx = dw.CONCEPT_INDEX
    noise = torch.rand(2000, 4, generator=torch.Generator().manual_seed(1)) < 0.5
    # level 0 sees objects (and a duplicate of chimney), level 1 parts, level 2 attributes
    firing = {
        901: torch.stack([lab[:, idx["house"]], lab[:, idx["tree"]], lab[:, idx["chimney"]], noise[:, 0]], 1),
        501: torch.stack([lab[:, idx[c]] for c in ("chimney", "window", "apples")] + [noise[:, 1]], 1),
        101: torch.stack([lab[:, idx[c]] for c in ("smoke", "flowers", "basket")] + [noise[:, 2]], 1),
    }
    g = recover_timestep_graph(firing)
    assignment = timestep_graph.match_latents(firing, lab, dw.CONCEPTS)
    assert assignment["t901:2"][0] == "chimney" and "t901:3" not in assignment
    score = timestep_graph.score_graph(g, assignment, dw.true_edges())
    assert score["f1"] == 1.0, score
    assert ("t501:0", "t901:0") in g.edges and ("t501:0", "t901:2") not in g.edges


def test_timestep_graph_bad_input():
    with pytest.raises(ValueError, match="at least two timesteps"):
        recover_timestep_graph({1: torch.zeros(4, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="n_images"):
        recover_timestep_graph(
            {1: torch.zeros(4, 2, dtype=torch.bool), 2: torch.zeros(5, 2, dtype=torch.bool)}
        )


# --- the shipped denoiser ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe():
    return dw.load_pretrained()


def test_shipped_weights_are_small_and_load(pipe):
    from sae_causal_plugin.worlds.diffusion_world.model import WEIGHTS_FILE, assets_dir

    assert (assets_dir() / WEIGHTS_FILE).stat().st_size < 10_000_000
    assert pipe.config["readback"]["accuracy"] >= 0.95
    x = pipe(dw.labels(["tree", "apples"]), num_inference_steps=2,
             generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 3, 16, 16) and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_shipped_denoiser_draws_what_it_is_asked_for(pipe):
    classes = dw.all_classes()
    images = pipe(classes, num_inference_steps=10, generator=torch.Generator().manual_seed(1))
    assert (dw.detect_concepts(images) == classes).all(1).float().mean() >= 0.9


def test_pipeline_rejects_bad_labels(pipe):
    with pytest.raises(ValueError, match="unknown concept"):
        pipe(["house", "door"])
    with pytest.raises(ValueError, match="inconsistent"):
        pipe(["tree", "smoke"])
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(["tree"], num_inference_steps=0)


def test_concept_embedding_is_additive(pipe):
    emb = pipe.embedding
    s = dw.sample_strengths(dw.labels(["house", "chimney", "smoke"]), torch.Generator().manual_seed(0))
    assert ((s == 0) | ((s >= 0.6) & (s <= 1.0))).all() and int((s > 0).sum()) == 3
    with torch.no_grad():
        parts = [emb(torch.zeros(1, 8))] + [
            emb(torch.eye(8)[i : i + 1] * s[i]) - emb(torch.zeros(1, 8)) for i in range(8)
        ]
        assert torch.allclose(emb(s[None]), sum(parts), atol=1e-5)


# --- steering through per-timestep SAEs ------------------------------------------------------------
def _toy_saes(d_sae: int = 8) -> dict:
    from sae_lens import SAE, JumpReLUSAEConfig

    torch.manual_seed(0)
    return {t: SAE.from_dict(JumpReLUSAEConfig(d_in=32, d_sae=d_sae).to_dict()) for t in (901, 501, 101)}


def test_timestep_windows_split_the_schedule():
    from sae_causal_plugin.worlds.diffusion_world.steering import timestep_windows

    w = timestep_windows([101, 901, 501])
    assert [w[t].timesteps for t in (901, 501, 101)] == [(702, 1000), (302, 701), (0, 301)]
    with pytest.raises(ValueError, match="outside"):
        timestep_windows([1200])


def test_concept_steering_edits_generation_and_checks_input(pipe):
    from sae_causal_plugin.diffusion import StepWindow
    from sae_causal_plugin.worlds.diffusion_world.steering import concept_steering

    saes = _toy_saes()
    latents = {"chimney": {901: [0], 501: [0, 1]}, "smoke": {101: [2]}}
    noise = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    lab = dw.labels(["house", "chimney", "smoke"])
    base = pipe(lab, num_inference_steps=4, latents=noise)
    with concept_steering(pipe, saes, latents, "chimney", "add", value=50.0,
                          num_inference_steps=4) as entered:
        assert len(entered) == 2
        steered = pipe(lab, num_inference_steps=4, latents=noise)
    assert not torch.equal(base, steered)
    assert torch.equal(base, pipe(lab, num_inference_steps=4, latents=noise))  # hooks removed
    graph = dw.true_graph()
    with concept_steering(pipe, saes, latents, "chimney", include_descendants=True,
                          concept_graph=graph, num_inference_steps=4) as entered:
        assert len(entered) == 3  # the smoke latent at t=101 comes with its parent
    with pytest.raises(ValueError, match="unknown concept"):
        with concept_steering(pipe, saes, latents, "door"):
            pass
    with pytest.raises(ValueError, match="no latents"):
        with concept_steering(pipe, saes, latents, "window"):
            pass
    with pytest.raises(ValueError, match="outside the scheduler's range"):
        with concept_steering(pipe, saes, latents, "chimney",
                              windows={901: StepWindow(timesteps=(1100, 1500))}):
            pass
    with pytest.raises(ValueError, match="selects none"):
        with concept_steering(pipe, saes, latents, "chimney", num_inference_steps=4,
                              windows={501: StepWindow(timesteps=(400, 450))}):
            pass


# --- benchmark plumbing (fast parts) ---------------------------------------------------------------
def test_experiment_helpers():
    from sae_causal_plugin.worlds.diffusion_world import experiment

    assert experiment.true_mean_l0() == pytest.approx(2.125)
    g = experiment.recovered_concept_graph([("chimney", "house"), ("house", "chimney"), ("smoke", "chimney")])
    assert set(g.edges) == {("chimney", "house"), ("smoke", "chimney")}
    lat = experiment.concept_latents({"t501:3": ("chimney", 0.9), "t501:1": ("chimney", 0.8), "t901:0": ("house", 1.0)})
    assert lat == {"chimney": {501: [1, 3]}, "house": {901: [0]}}


def test_bench_options_come_from_the_config(capsys):
    from sae_causal_plugin.bench import diffusion_world as bench
    from sae_causal_plugin.worlds.diffusion_world.experiment import DiffusionWorldConfig

    assert bench.parse_args([]) == (DiffusionWorldConfig(), False)
    cfg, as_json = bench.parse_args(["--seed", "3", "--timesteps", "700", "300", "--tokens", "--k", "2.5",
                                     "--weights", "w", "--graph", '{"min_support": 4}', "--json"])
    assert as_json and cfg == DiffusionWorldConfig(seed=3, timesteps=(700, 300), pool=False, k=2.5, weights="w",
                                                   graph={"min_support": 4})
    for argv, message in ((["--timesteps", "500"], "--timesteps needs at least 2 values"),
                          (["--n-samples", "0"], "--n-samples must be positive"),
                          (["--train-images", "-1"], "--train-images must be positive"),
                          (["--graph", "[1]"], "--graph must be a JSON object")):
        with pytest.raises(SystemExit) as exit_info:
            bench.parse_args(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_diffusion_overhead_wrapper_is_importable():
    from sae_causal_plugin.bench import diffusion_overhead

    assert callable(diffusion_overhead.main)


def test_training_is_seeded_and_reads_back():
    from sae_causal_plugin.worlds.diffusion_world.train import TrainConfig, readback_accuracy, train_denoiser

    cfg = TrainConfig(steps=2, batch_size=4, warmup_steps=1, log_every=1)
    rng = torch.get_rng_state()
    unet_a, emb_a, summary = train_denoiser(cfg, log=None)
    assert torch.equal(torch.get_rng_state(), rng)  # seeded inside, the caller's stream untouched
    unet_b, emb_b, _ = train_denoiser(cfg, log=None)
    assert summary["train"]["seed"] == 0 and summary["train_seconds"] >= 0
    for a, b in zip(list(unet_a.state_dict().values()) + list(emb_a.state_dict().values()),
                    list(unet_b.state_dict().values()) + list(emb_b.state_dict().values())):
        assert torch.equal(a, b)
    out = readback_accuracy(dw.DiffusionWorldPipeline(unet_a, emb_a), per_class=1, num_inference_steps=1)
    # two training steps: no image reads back as its whole class; per concept about chance
    assert out["n"] == dw.N_CLASSES and out["accuracy"] == 0.0
    assert out["per_concept"] == pytest.approx({"house": 0.25, "tree": 0.75, "chimney": 0.5, "window": 0.5,
                                                "apples": 0.75, "smoke": 0.25, "flowers": 1 / 3,
                                                "basket": 1 / 12}, abs=1e-6)


def test_image_level_sae_edits_every_token_of_an_image_alike():
    from sae_causal_plugin.steering import steer_activations
    from sae_causal_plugin.worlds.diffusion_world.steering import ImageLevelSAE

    sae = _toy_saes()[901]
    wrapped = ImageLevelSAE(sae, tokens_per_image=4)
    assert wrapped.cfg.d_in == 32 and wrapped.W_dec is sae.W_dec
    x = torch.randn(2, 32, 2, 2, generator=torch.Generator().manual_seed(0))
    rows = x.movedim(1, -1).reshape(-1, 32)
    code = wrapped.encode(rows)
    assert torch.allclose(code[:4], sae.encode(rows[:4].mean(0, keepdim=True)).expand(4, -1))
    latent = int(code[0].argmax())
    out = steer_activations(x, wrapped, [latent], "ablate", channel_dim=1)
    change = (out - x).movedim(1, -1).reshape(2, 4, 32)
    assert torch.allclose(change, change[:, :1].expand(-1, 4, -1), atol=1e-6)
    assert torch.allclose(change[0, 0], -code[0, latent] * sae.W_dec[latent], atol=1e-5)
    with pytest.raises(ValueError, match="tokens_per_image"):
        ImageLevelSAE(sae, 0)
    with pytest.raises(ValueError, match="rows"):
        wrapped.encode(rows[:3])


def test_build_denoiser_seeds_its_own_weights_only():
    from sae_causal_plugin.worlds.diffusion_world.model import build_denoiser

    rng = torch.get_rng_state()
    a, b = build_denoiser(seed=3), build_denoiser(seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(3)
    c = build_denoiser(seed=None)  # from the stream as it stands: the same draws as seed=3
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
