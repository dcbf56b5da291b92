"""``--sae DIR``: a saved SAELens SAE folder, checked against the model hook it is used on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae_causal_plugin.cli.errors import UserError


def load_sae_dir(path_str: str) -> Any:
    """The SAE saved in ``path_str`` (``cfg.json`` + weights, checked before SAELens reads them), on the CPU."""
    from sae_causal_plugin._validation import SAE_WEIGHTS_FILE, check_finite_tensor, check_sae_folder

    path = Path(path_str)
    if not path.exists():
        raise UserError(f"SAE folder {path} does not exist")
    if not path.is_dir() or not (path / "cfg.json").is_file():
        raise UserError(f"{path} is not a SAELens SAE folder (no cfg.json); train one with "
                        "'sae-causal train' or save one with save_inference_model")
    check_sae_folder(path)
    from sae_lens import SAE

    import sae_causal_plugin  # noqa: F401 - registers our architectures

    try:
        sae = SAE.load_from_disk(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - a broken folder is the user's input
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: SAELens cannot load this SAE folder ({first}); re-save it with "
                        "save_inference_model or 'sae-causal train'") from None
    for name, param in sae.named_parameters():
        check_finite_tensor(param.detach(), f"{path / SAE_WEIGHTS_FILE}: weights {name}",
                            "retrain the SAE, or load an earlier checkpoint")
    sae.eval()
    return sae


def saved_field(sae: Any, name: str) -> Any:
    """A field SAELens's runner recorded in the SAE's metadata (``None`` if absent)."""
    metadata = getattr(sae.cfg, "metadata", None)
    return None if metadata is None else getattr(metadata, name, None)


def model_and_hook(
    sae: Any, model: str | None, hook: str | None, sae_path: str, *, force_hook: bool = False,
) -> tuple[str, str]:
    """``--model`` / ``--hook``, defaulting to what the SAE's metadata says it was trained on.

    A ``--hook`` other than the recorded one is refused unless ``force_hook``: an SAE read at
    another hook of the same width gives silently wrong graphs and edits.
    """
    recorded = saved_field(sae, "hook_name")
    if hook and recorded and hook != recorded and not force_hook:
        raise UserError(f"--hook {hook!r} is not the hook the SAE in {sae_path} was trained on "
                        f"({recorded!r}); leave --hook out, or pass --force-hook to use it anyway")
    model = model or saved_field(sae, "model_name")
    hook = hook or recorded
    if not model or not hook:
        raise UserError(f"the SAE in {sae_path} does not record its model and hook; pass --model and --hook")
    return model, hook


def check_sae_fits_hook(sae: Any, handle: Any, hook: str, sae_path: str) -> None:
    """``UserError`` unless the hook's width equals the SAE's ``d_in``."""
    width = handle.hook_width(hook)
    d_in = int(sae.cfg.d_in)
    if width != d_in:
        raise UserError(f"the SAE in {sae_path} has d_in={d_in} but hook {hook!r} of model "
                        f"{handle.name!r} has width {width}; pass the --hook it was trained on")
