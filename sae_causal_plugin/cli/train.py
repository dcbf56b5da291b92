"""``sae-causal train CONFIG``: train an SAE with SAELens's runner from a YAML / JSON config."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sae_causal_plugin.cli.errors import UserError

EXAMPLE = """\
example config (YAML; keys are SAELens LanguageModelSAERunnerConfig fields):

  architecture: hierarchical_batchtopk   # any SAELens-registered architecture
  model_name: language-world             # shipped toy model, a local model folder, or e.g. gpt2
  hook_name: blocks.1.hook_resid_post
  dataset_path: language-world           # toy-world text, or a .txt/.jsonl/.json/.pt file
  context_size: 32
  training_tokens: 200000
  train_batch_size_tokens: 1024
  n_batches_in_buffer: 64                # buffer rows = this x context_size >= batch size
  lr: 0.003
  output_path: saes/language_world       # the SAE folder (save_inference_model)
  sae:
    d_sae: 128                           # d_in is read off the hook when left out
    k: 4
    compression_coefficient: 10.0
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train an SAE from a YAML / JSON config that mirrors SAELens's runner config",
        description=textwrap.fill(
            "Train an SAE with SAELens's LanguageModelSAETrainingRunner and save it with "
            "save_inference_model (a stock SAELens folder). "
            "The config file mirrors LanguageModelSAERunnerConfig: its keys are that class's field names, "
            "'logger:' holds LoggingConfig fields, 'architecture:' picks any SAELens-registered training "
            "architecture (hierarchical_batchtopk, hierarchical_topk, hierarchical_jumprelu, topk, "
            "batchtopk, jumprelu, matryoshka_batchtopk, ...) and the SAE's own fields (d_sae, k, "
            "compression_coefficient, ...) go under 'sae:' or, as in SAELens's command line, at the top "
            "level. sae.d_in may be left out: it is read off the hook. Defaults are SAELens's, except "
            "architecture hierarchical_batchtopk, logger.log_to_wandb false and no checkpoints. An "
            "unknown key or a wrong type stops with one message naming the key (exit 2) before any "
            "model is loaded; the SAE folder appears only once training has finished.", width=90),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="path to the .yaml / .yml / .json config file")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="SAE output folder; overrides the config's output_path (default: output_path, "
                        "SAELens's default 'output')")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, non-empty output folder (its old files are deleted once "
                        "the new SAE is saved)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, the model, the hook and the dataset, print the plan, train nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sae_causal_plugin.cli.config import build_runner_config, load_train_config
    from sae_causal_plugin.cli.models import load_model
    from sae_causal_plugin._files import check_target_dir, staged_dir

    spec = load_train_config(args.config)
    output = Path(args.out or spec.get("output_path") or "output")
    try:
        check_target_dir(output, what="output folder")
    except ValueError as err:
        raise UserError(str(err)) from None
    if output.is_dir() and any(output.iterdir()):
        if not args.overwrite:
            raise UserError(f"output folder {output} is not empty; pass --overwrite or choose another --out")
        check_inputs_outside(output, spec)

    handle = load_model(spec.get("model_name"), device=spec.get("llm_device") or spec.get("device"))
    hook = spec.get("hook_name")
    width = handle.hook_width(hook)
    d_in = spec.sae.setdefault("d_in", width)
    if d_in != width:
        raise UserError(f"config key 'sae.d_in' is {d_in} but hook {hook!r} of model "
                        f"{handle.name!r} has width {width}; remove sae.d_in or fix hook_name")
    dataset, dataset_overrides = _dataset(spec, handle)
    cfg = build_runner_config(spec, output_path=str(output), **dataset_overrides)
    check_buffer(cfg)
    n_steps = cfg.total_training_steps
    print(f"training {spec.architecture} (d_in={d_in}, d_sae={spec.sae['d_sae']}) on {handle.name} "
          f"{hook} for {cfg.training_tokens} tokens ({n_steps} steps) -> {output}")
    if args.dry_run:
        return 0
    from sae_lens import LanguageModelSAETrainingRunner

    from sae_causal_plugin._interrupts import keyboard_interrupt_in_training

    with staged_dir(output, what="output folder", replace=True) as stage, _quiet_override_warnings():
        cfg.output_path = str(stage)
        runner = LanguageModelSAETrainingRunner(cfg, override_model=handle.model, override_dataset=dataset)
        sae = keyboard_interrupt_in_training(runner).run()
    print(f"saved the SAE to {output}")
    print(_summary(sae, handle, hook, dataset, cfg))
    return 0


SUMMARY_ROWS = 256


def _summary(sae: Any, handle: Any, hook: str, dataset: Any, cfg: Any) -> str:
    """The trained SAE on the first rows of its (local) training data, at the positions it trained on."""
    if dataset is None:
        return "summary: skipped (the dataset streams from the hub; run 'sae-causal graph' for figures)"
    import torch

    from sae_causal_plugin.cli.data import hook_activations
    from sae_causal_plugin.saes.summary import summarise_sae

    tokens = torch.tensor(dataset["input_ids"][:SUMMARY_ROWS])
    excluded = cfg.exclude_special_tokens if isinstance(cfg.exclude_special_tokens, list) else None
    stats = summarise_sae(sae, hook_activations(handle, hook, tokens, exclude_tokens=excluded))
    return f"summary: {stats}, first {tokens.shape[0]} sequences of the training data"


def check_inputs_outside(output: Path, spec: Any) -> None:
    """``--overwrite`` deletes the old output folder: refuse when the run's own inputs lie inside it."""
    out = output.resolve()
    inputs = {"config file": str(spec.source), "dataset_path": spec.get("dataset_path"),
              "model_name": spec.get("model_name")}
    for what, value in inputs.items():
        if isinstance(value, str) and value and Path(value).exists():
            path = Path(value).resolve()
            if path == out or out in path.parents:
                raise UserError(f"the {what} {value} lies inside the output folder {output}, which "
                                "--overwrite would delete; choose another --out")


def check_buffer(cfg: Any) -> None:
    """SAELens mixes activations in a buffer of ``n_batches_in_buffer x context`` rows; it must hold a batch."""
    context = len(range(cfg.context_size)[slice(*cfg.seqpos_slice)])
    rows = cfg.n_batches_in_buffer * context
    if rows < cfg.train_batch_size_tokens:
        needed = -(-cfg.train_batch_size_tokens // max(context, 1))
        raise UserError(
            f"config keys 'n_batches_in_buffer' x 'context_size' give a buffer of {rows} tokens, fewer "
            f"than 'train_batch_size_tokens' ({cfg.train_batch_size_tokens}); set n_batches_in_buffer "
            f"to {needed} or more"
        )


@contextmanager
def _quiet_override_warnings() -> Iterator[None]:
    """Hide SAELens's "you passed in a model / dataset" warnings: here the config names both."""
    import logging

    class _Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "You just passed in a" not in record.getMessage()

    sae_lens_logger = logging.getLogger("sae_lens")
    quiet = _Filter()
    sae_lens_logger.addFilter(quiet)
    try:
        yield
    finally:
        sae_lens_logger.removeFilter(quiet)


def _dataset(spec: Any, handle: Any) -> tuple[Any, dict[str, Any]]:
    """An in-memory tokenized dataset for a local / toy source; ``None`` for a hub dataset name."""
    from sae_causal_plugin.cli.data import load_tokens
    from sae_causal_plugin.cli.models import LANGUAGE_WORLD

    path = spec.get("dataset_path")
    if not path:
        raise UserError("config key 'dataset_path' is required: a .txt/.jsonl/.json/.pt file, "
                        f"{LANGUAGE_WORLD!r}, or a Hugging Face dataset name")
    local = path == LANGUAGE_WORLD or Path(path).exists() or path.startswith((".", "/", "~")) or (
        Path(path).suffix in (".txt", ".json", ".jsonl", ".pt", ".safetensors"))
    if not local:
        return None, {}
    from datasets import Dataset

    tokens = load_tokens(path, handle, context_size=spec.get("context_size"),
                         n_tokens=spec.get("training_tokens"), seed=spec.get("seed"))
    dataset = Dataset.from_dict({"input_ids": tokens.tolist()})
    return dataset, {"is_dataset_tokenized": True, "streaming": False}
