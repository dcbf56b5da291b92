"""The ``sae-causal train`` config file: SAELens's ``LanguageModelSAERunnerConfig`` in YAML / JSON.

Keys are the runner config's field names (``model_name``, ``hook_name``, ``dataset_path``,
``context_size``, ``training_tokens``, ``lr`` ...), ``logger:`` holds ``LoggingConfig`` fields,
``architecture:`` names any SAELens-registered training architecture (ours included) and the
SAE's own fields (``d_sae``, ``k``, ``compression_coefficient`` ...) go under ``sae:`` or, as in
SAELens's command line, at the top level.  ``sae.d_in`` may be left out: it is read off the
model's hook.

Defaults are SAELens's, except: ``architecture`` ``hierarchical_batchtopk``, ``logger.log_to_wandb``
false (the command works offline) and ``checkpoint_path`` none unless ``n_checkpoints`` > 0.
An unknown key or a value of the wrong type is a :class:`UserError` that names the key. Keys of
terms older versions had (:data:`~sae_causal_plugin.saes.config.REMOVED_FIELDS`) are dropped
when they left the term off, and refused when they switched it on.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from sae_causal_plugin.cli.errors import UserError, closest

DEFAULT_ARCHITECTURE = "hierarchical_batchtopk"
#: runner fields the file may not set (filled in by SAELens or by the command).
_RUNNER_INTERNAL = {"sae", "logger", "hook_eval", "sae_lens_version", "sae_lens_training_version"}
_SAE_INTERNAL = {"metadata"}
#: fields both configs have; at the top level they mean the runner's, and the SAE inherits them.
_SHARED = {"device", "dtype"}


@dataclass
class TrainSpec:
    """A validated config file: architecture, runner fields, SAE fields, logger fields."""

    architecture: str
    runner: dict[str, Any]
    sae: dict[str, Any]
    logger: dict[str, Any]
    source: Path

    def get(self, key: str) -> Any:
        """A runner field's value, SAELens's default where the file leaves it out."""
        if key in self.runner:
            return self.runner[key]
        from sae_lens import LanguageModelSAERunnerConfig

        field = {f.name: f for f in dataclasses.fields(LanguageModelSAERunnerConfig)}[key]
        if field.default is not dataclasses.MISSING:
            return field.default
        return field.default_factory()  # type: ignore[misc]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.yaml`` / ``.yml`` / ``.json`` file into a dict (``UserError`` on failure)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise UserError(f"config file {path}: use a .yaml, .yml or .json file")
    except (ValueError, ImportError) as err:  # json / yaml errors derive from ValueError or YAMLError
        raise UserError(f"config file {path} does not parse: {err}") from None
    except Exception as err:  # noqa: BLE001 - yaml.YAMLError
        raise UserError(f"config file {path} does not parse: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def load_train_config(path: str | Path) -> TrainSpec:
    """Read and validate a training config (see the module docstring)."""
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig
    from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY

    import sae_causal_plugin.saes  # noqa: F401 - registers our architectures

    data = read_config_file(path)
    nested = data.get("sae", {})
    if not isinstance(nested, dict):
        raise UserError(f"config key 'sae' must be a mapping of SAE fields, got {nested!r}")
    arch = data.get("architecture", nested.get("architecture", DEFAULT_ARCHITECTURE))
    if "architecture" in data and "architecture" in nested and data["architecture"] != nested["architecture"]:
        raise UserError("config keys 'architecture' and 'sae.architecture' disagree; keep one")
    if not isinstance(arch, str) or arch not in SAE_TRAINING_CLASS_REGISTRY:
        known = ", ".join(SAE_TRAINING_CLASS_REGISTRY)
        raise UserError(f"config key 'architecture' must name a registered SAELens architecture "
                        f"({known}), got {arch!r}")
    sae_class = SAE_TRAINING_CLASS_REGISTRY[arch][1]
    runner_hints = _hints(LanguageModelSAERunnerConfig, _RUNNER_INTERNAL)
    sae_hints = _hints(sae_class, _SAE_INTERNAL)
    logger_hints = _hints(LoggingConfig, set())

    runner: dict[str, Any] = {}
    sae: dict[str, Any] = {}
    logger: dict[str, Any] = {"log_to_wandb": False}
    for key, value in data.items():
        if key in ("architecture", "sae"):
            continue
        if key == "logger":
            if not isinstance(value, dict):
                raise UserError(f"config key 'logger' must be a mapping of LoggingConfig fields, got {value!r}")
            for sub, sub_value in value.items():
                if sub not in logger_hints:
                    raise UserError(f"unknown config key 'logger.{sub}': not a field of LoggingConfig"
                                    f"{closest(sub, logger_hints)}")
                logger[sub] = _checked(f"logger.{sub}", sub_value, logger_hints)
        elif key in runner_hints:
            runner[key] = _checked(key, value, runner_hints)
        elif key in sae_hints:
            sae[key] = _checked(key, value, sae_hints)
        elif _removed(key, value, sae_class):
            continue
        else:
            raise UserError(
                f"unknown config key {key!r}: not a field of LanguageModelSAERunnerConfig nor of "
                f"{sae_class.__name__}{closest(key, [*runner_hints, *sae_hints, 'logger', 'sae'])}"
            )
    for key, value in nested.items():
        if key == "architecture":
            continue
        if key not in sae_hints and _removed(f"sae.{key}", value, sae_class):
            continue
        if key not in sae_hints:
            raise UserError(f"unknown config key 'sae.{key}': not a field of {sae_class.__name__}"
                            f"{closest(key, sae_hints)}")
        if key in sae and key not in _SHARED:
            raise UserError(f"config key {key!r} is given both at the top level and under 'sae'; keep one")
        sae[key] = _checked(f"sae.{key}", value, sae_hints)
    for key in _SHARED:
        if key in runner and key not in nested:
            sae[key] = runner[key]
    if "d_sae" not in sae:
        raise UserError("config key 'sae.d_sae' (the number of SAE latents) is required")
    if runner.get("n_checkpoints", 0) == 0 and "checkpoint_path" not in runner:
        runner["checkpoint_path"] = None
    return TrainSpec(arch, runner, sae, logger, Path(path))


def build_runner_config(spec: TrainSpec, **overrides: Any) -> Any:
    """``LanguageModelSAERunnerConfig`` of ``spec`` with ``overrides`` (``UserError`` if SAELens refuses)."""
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig
    from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY

    sae_class = SAE_TRAINING_CLASS_REGISTRY[spec.architecture][1]
    runner = {**spec.runner, **overrides}
    try:
        sae_cfg = sae_class(**spec.sae)
        return LanguageModelSAERunnerConfig(sae=sae_cfg, logger=LoggingConfig(**spec.logger), **runner)
    except (ValueError, TypeError) as err:
        raise UserError(f"config file {spec.source}: {err}") from None


def _removed(key: str, value: Any, sae_class: type) -> bool:
    """Whether ``key`` is a field an older version of our configs had (then dropped; ``UserError`` when
    it switched a removed term on)."""
    from sae_causal_plugin.saes.config import REMOVED_FIELDS, MinimalityConfig, without_removed_fields

    name = key.split(".")[-1]
    if not issubclass(sae_class, MinimalityConfig) or name not in REMOVED_FIELDS:
        return False
    try:
        without_removed_fields({name: value})
    except ValueError as err:
        raise UserError(f"config key {key!r}: {err}") from None
    return True


def _hints(cls: type, exclude: set[str]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in exclude}


def _checked(key: str, value: Any, hints: dict[str, Any]) -> Any:
    hint = hints[key.split(".")[-1]]
    try:
        return coerce(value, hint)
    except TypeError:
        raise UserError(
            f"config key {key!r} must be {describe(hint)}, got {value!r} ({type(value).__name__})"
        ) from None
    except ValueError as err:  # a number that is not finite
        raise UserError(f"config key {key!r}: {err}") from None


def coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against type ``hint`` (ints accepted as floats, lists as tuples); ``TypeError`` if it
    does not fit, ``ValueError`` for a number that is not finite."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return value
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return coerce(value, arg)
            except TypeError:
                continue
        raise TypeError(hint)
    if origin is Literal:
        if value in args and not isinstance(value, bool) or value is None and None in args:
            return value
        raise TypeError(hint)
    if hint is type(None):
        if value is None:
            return None
        raise TypeError(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(hint)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(hint)
    if hint is float:
        return _as_float(value, hint)
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError(hint)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(hint)
        inner = args[0] if args else Any
        items = [coerce(v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(hint)
        return dict(value)
    return value


def _as_float(value: Any, hint: Any) -> float:
    """A number (YAML 1.1 reads 1e-3, without a dot, as a string); ``ValueError`` when not finite."""
    from sae_causal_plugin._validation import check_float

    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise TypeError(hint)
    return check_float(number, "the value", fix="give a finite number")


def describe(hint: Any) -> str:
    """Plain-words name of a type hint, e.g. ``"an integer or null"``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
