"""Hooks across a whole diffusers generation: per-timestep caches, step windows and CFG rows.

:class:`HookedDiffusionPipeline` wraps any diffusers pipeline that calls a UNet (``pipe.unet``) or
a transformer (``pipe.transformer``).  It does not re-implement sampling loops: a pre-forward hook
on the denoiser reads the ``timestep`` argument of every call and matches it to
``pipe.scheduler.timesteps``, which gives the current *timestep* (the cache key) and *step index*
(0 = first, noisiest step).

Classifier-free guidance doubles the batch.  Diffusers text-to-image pipelines lay it out as
``[uncond, cond]``; ``DiTPipeline`` as ``[cond, uncond]``.  Hooks and caches pick rows with
``cfg="cond" | "uncond" | "both"``; a hook restricted to one half sees only those rows and its
return value is written back into them.  Without CFG, ``"cond"`` and ``"both"`` mean every row and
``"uncond"`` means none.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch import Tensor
from transformer_lens.hook_points import HookPoint, NamesFilter

from sae_causal_plugin.diffusion.hooked import HookedDenoiser, hook_denoiser

CFGRows = Literal["cond", "uncond", "both"]
CFG_ROWS: tuple[str, ...] = ("cond", "uncond", "both")
Timestep = Union[int, float]


@dataclass(frozen=True)
class StepWindow:
    """Which denoising calls a hook acts on; all given conditions must hold.

    Args:
        timesteps: inclusive ``(low, high)`` range of timestep values (order does not matter).
        steps: half-open ``(start, stop)`` range of step indices, ``0`` = first (noisiest) step;
            ``stop=None`` runs to the end.
        exact: a set of timesteps that must each be in the schedule.

    Example:
        >>> StepWindow(timesteps=(500, 999))   # the noisy half of a 1000-step schedule
        >>> StepWindow(steps=(0, 10))          # the first ten denoising steps
        >>> StepWindow.at([899, 500, 100])     # exactly these timesteps
    """

    timesteps: tuple[float, float] | None = None
    steps: tuple[int, int | None] | None = None
    exact: frozenset[float] | None = None

    @classmethod
    def at(cls, timesteps: Sequence[Timestep]) -> "StepWindow":
        """A window of exactly these timesteps."""
        return cls(exact=frozenset(float(t) for t in timesteps))

    @property
    def is_all(self) -> bool:
        return self.timesteps is None and self.steps is None and self.exact is None

    def contains(self, step: int | None, timestep: Timestep | None) -> bool:
        """Whether a call at ``step`` / ``timestep`` is inside the window."""
        if self.timesteps is not None:
            lo, hi = sorted(self.timesteps)
            if timestep is None or not lo <= timestep <= hi:
                return False
        if self.exact is not None and (timestep is None or float(timestep) not in self.exact):
            return False
        if self.steps is not None:
            start, stop = self.steps
            if step is None or step < start or (stop is not None and step >= stop):
                return False
        return True

    def check(self, num_train_timesteps: int | None = None, num_steps: int | None = None) -> None:
        """``ValueError`` if the window cannot select anything in a schedule of this size."""
        if self.timesteps is not None and num_train_timesteps is not None:
            lo, hi = sorted(self.timesteps)
            if lo < 0 or hi > num_train_timesteps:
                raise ValueError(
                    f"timestep window {self.timesteps} is outside the scheduler's range "
                    f"[0, {num_train_timesteps}]; choose timesteps inside it"
                )
        if self.exact is not None and num_train_timesteps is not None:
            bad = sorted(t for t in self.exact if not 0 <= t <= num_train_timesteps)
            if bad:
                raise ValueError(
                    f"timesteps {bad} are outside the scheduler's range [0, {num_train_timesteps}]"
                )
        if self.steps is not None:
            start, stop = self.steps
            if start < 0 or (stop is not None and stop <= start):
                raise ValueError(f"step window {self.steps} must satisfy 0 <= start < stop")
            if num_steps is not None and start >= num_steps:
                raise ValueError(
                    f"step window {self.steps} starts after the last of the {num_steps} denoising "
                    "steps; lower start or raise num_inference_steps"
                )

    def check_schedule(self, timesteps: Sequence[Timestep]) -> None:
        """``ValueError`` unless the window selects at least one step of this schedule."""
        ts = list(timesteps)
        if self.exact is not None:
            missing = sorted(t for t in self.exact if t not in {float(v) for v in ts})
            if missing:
                near = {_fmt(t): _fmt(min(ts, key=lambda v: abs(v - t))) for t in missing}
                raise ValueError(
                    f"timesteps {[_fmt(t) for t in missing]} are not in the scheduler's schedule; "
                    f"nearest: {near}. "
                    f"Schedule: {_short(ts)}"
                )
        if not any(self.contains(i, t) for i, t in enumerate(ts)):
            raise ValueError(
                f"{self} selects none of the {len(ts)} denoising steps (schedule {_short(ts)}); "
                "widen the window or change num_inference_steps"
            )


def _fmt(t: Timestep) -> Timestep:
    return int(t) if float(t).is_integer() else round(float(t), 3)


def _short(ts: Sequence[Timestep]) -> str:
    ts = [_fmt(t) for t in ts]
    return str(ts) if len(ts) <= 8 else f"[{ts[0]}, {ts[1]}, {ts[2]}, ..., {ts[-2]}, {ts[-1]}]"


def as_window(spec: "StepWindow | Sequence[Timestep] | None") -> StepWindow:
    """``None`` -> every step; a ``StepWindow`` as is; a sequence -> exactly those timesteps."""
    if spec is None:
        return StepWindow()
    if isinstance(spec, StepWindow):
        return spec
    if isinstance(spec, (int, float)):
        return StepWindow.at([spec])
    return StepWindow.at(list(spec))


@dataclass
class GenerationState:
    """What the denoiser is doing right now (updated before each denoiser call)."""

    step: int | None = None
    timestep: Timestep | None = None
    cfg_active: bool = False
    batch_size: int | None = None


class DiffusionCache(dict):
    """Activations keyed by ``(hook_name, timestep)``, e.g. ``cache["mid_block.hook_out", 899]``.

    ``timestep`` is the scheduler's own value (``int`` for discrete schedulers).  A timestep seen
    twice in one generation keeps the last call's activation.
    """

    @property
    def timesteps(self) -> list[Timestep]:
        """Distinct timesteps in denoising order (noisiest first)."""
        return sorted({t for _, t in self}, reverse=True)

    @property
    def names(self) -> list[str]:
        return sorted({n for n, _ in self})

    def stack(self, name: str) -> Tensor:
        """``[n_timesteps, ...]`` activations of one hook in denoising order."""
        return torch.stack([self[name, t] for t in self.timesteps if (name, t) in self])

    def at(self, timestep: Timestep) -> dict[str, Tensor]:
        """All cached hooks at one timestep."""
        return {n: v for (n, t), v in self.items() if t == timestep}


def _default_layout(pipe: Any) -> tuple[str, str]:
    """Order of the CFG halves in the doubled batch of ``pipe``."""
    return ("cond", "uncond") if type(pipe).__name__ == "DiTPipeline" else ("uncond", "cond")


def _as_key(t: float, integral: bool) -> Timestep:
    return int(round(t)) if integral and abs(t - round(t)) < 1e-6 else t


class GenerationTracker:
    """Tracks step, timestep and CFG state of a denoiser and gates hooks on them.

    Args:
        denoiser: the hooked denoiser.
        pipe: the pipeline calling it, if any: its scheduler gives step indices, and its
            ``do_classifier_free_guidance`` flag (when it has one) says whether CFG is on.
        scheduler: a scheduler to use when there is no pipeline (``None``: no step windows).
        cfg_layout: order of the CFG halves; ``("uncond", "cond")`` except for ``DiTPipeline``.

    Without a CFG flag, CFG is detected by the two batch halves of the noisy sample being equal,
    which is how diffusers CFG pipelines build their model input.
    """

    def __init__(
        self,
        denoiser: HookedDenoiser,
        *,
        pipe: Any = None,
        scheduler: Any = None,
        cfg_layout: tuple[str, str] | None = None,
    ):
        layout = tuple(cfg_layout or _default_layout(pipe))
        if sorted(layout) != ["cond", "uncond"]:
            raise ValueError(f"cfg_layout must order 'cond' and 'uncond', got {cfg_layout}")
        self.denoiser = denoiser
        self.pipe = pipe
        self._scheduler = scheduler
        self.cfg_layout = layout
        self.state = GenerationState()
        self._windows: list[StepWindow] = []
        self._seen_schedule: Tensor | None = None

    @property
    def scheduler(self) -> Any:
        """The pipeline's current scheduler (pipelines may swap it), else the one given."""
        return self.pipe.scheduler if self.pipe is not None else self._scheduler

    # --- before generation ------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int | None:
        cfg = getattr(self.scheduler, "config", None)
        n = getattr(cfg, "num_train_timesteps", None) if cfg is not None else None
        return int(n) if n is not None else None

    def schedule(self, num_inference_steps: int | None) -> list[Timestep] | None:
        """The timesteps a fresh ``set_timesteps(num_inference_steps)`` gives (``None`` if unknown)."""
        if self.scheduler is None or num_inference_steps is None:
            return None
        try:
            sched = copy.deepcopy(self.scheduler)
            sched.set_timesteps(num_inference_steps)
            return [v.item() for v in sched.timesteps]
        except Exception:  # schedulers needing extra arguments (e.g. Flux's mu)
            return None

    def check_window(self, window: StepWindow, num_inference_steps: int | None = None) -> None:
        """``ValueError`` for a window outside the scheduler's range or the planned schedule."""
        if window.steps is not None and self.scheduler is None:
            raise ValueError("step windows need the pipeline's scheduler; wrap the pipeline")
        window.check(self.num_train_timesteps, num_inference_steps)
        planned = self.schedule(num_inference_steps)
        if planned is not None and not window.is_all:
            window.check_schedule(planned)

    # --- during generation ------------------------------------------------------------------
    def on_call(self, args: tuple, kwargs: dict) -> None:
        """Update :attr:`state` from a denoiser call (a pre-forward hook)."""
        st = self.state
        raw = self.denoiser.timestep_from(args, kwargs)
        ts = getattr(self.scheduler, "timesteps", None)
        st.step, st.timestep = None, raw
        if raw is not None and isinstance(ts, Tensor) and ts.numel():
            ts_cpu = ts.detach().double().cpu()
            if ts is not self._seen_schedule:  # a new set_timesteps: check windows against it
                self._seen_schedule = ts
                sched = [v.item() for v in ts.detach().cpu()]
                for window in self._windows:
                    window.check_schedule(sched)
            i = int((ts_cpu - raw).abs().argmin())
            if abs(float(ts_cpu[i]) - raw) <= 1e-3 * max(1.0, abs(raw)):
                st.step, st.timestep = i, ts[i].item()
        if raw is not None and st.step is None:
            st.timestep = _as_key(raw, True)
        sample = self.denoiser.sample_from(args, kwargs)
        st.batch_size = int(sample.shape[0]) if sample is not None else None
        st.cfg_active = self._detect_cfg(sample)

    def _detect_cfg(self, sample: Tensor | None) -> bool:
        if self.pipe is not None:
            try:
                flag = self.pipe.do_classifier_free_guidance
            except Exception:
                flag = None
            if isinstance(flag, bool):
                return flag
        if sample is None or sample.shape[0] < 2 or sample.shape[0] % 2:
            return False
        half = sample.shape[0] // 2
        return bool(torch.equal(sample[:half], sample[half:]))

    def rows(self, which: CFGRows, batch: int) -> slice:
        """Rows of a batch of ``batch`` that ``which`` selects right now."""
        if which == "both" or not self.state.cfg_active:
            return (
                slice(0, 0) if which == "uncond" and not self.state.cfg_active else slice(0, batch)
            )
        half = batch // 2
        return slice(0, half) if self.cfg_layout.index(which) == 0 else slice(half, batch)

    def gate(self, fn: Callable, window: StepWindow, cfg: CFGRows) -> Callable:
        """A TransformerLens hook running ``fn`` only inside ``window`` and on ``cfg`` rows."""
        if cfg not in CFG_ROWS:
            raise ValueError(f"cfg must be one of {CFG_ROWS}, got {cfg!r}")

        def gated(x: Tensor, hook: HookPoint) -> Tensor | None:
            st = self.state
            if not window.contains(st.step, st.timestep):
                return None
            rows = self.rows(cfg, x.shape[0])
            if rows.start == 0 and rows.stop == x.shape[0]:
                return fn(x, hook=hook)
            if rows.start == rows.stop:
                return None
            sub = x[rows]
            out = fn(sub, hook=hook)
            if out is None or out is sub:
                return None
            return torch.cat([x[: rows.start], out, x[rows.stop :]], dim=0)

        gated.__name__ = f"gated({getattr(fn, '__name__', repr(fn))})"
        return gated

    @contextmanager
    def attached(self, windows: Sequence[StepWindow] = ()) -> Iterator["GenerationTracker"]:
        """Track calls and fire hooks on the raw denoiser; ``windows`` are checked per schedule."""
        self._windows.extend(windows)
        self._seen_schedule = None
        try:
            with self.denoiser.attached(self.on_call):
                yield self
        finally:
            for w in windows:
                self._windows.remove(w)
            self.state = GenerationState()


def _resolve_names(denoiser: HookedDenoiser, names: NamesFilter) -> list[str]:
    if names is None:
        return list(denoiser.hook_dict)
    if isinstance(names, str):
        denoiser.check_hook_name(names)
        return [names]
    if callable(names):
        return [n for n in denoiser.hook_dict if names(n)]
    for n in names:
        denoiser.check_hook_name(n)
    return list(names)


class HookedDiffusionPipeline:
    """Run a diffusers pipeline with TransformerLens hooks on its denoiser.

    Example:
        >>> hp = HookedDiffusionPipeline(pipe)
        >>> images, cache = hp.run_with_cache("a cat", num_inference_steps=10,
        ...     names_filter="mid_block.hook_out", timesteps=[901, 501], cfg="cond")
        >>> cache["mid_block.hook_out", 901].shape     # (batch, C, H, W), cond rows only
    """

    def __init__(self, pipe: Any, cfg_layout: tuple[str, str] | None = None):
        raw = getattr(pipe, "unet", None)
        if raw is None:
            raw = getattr(pipe, "transformer", None)
        if raw is None:
            raise TypeError(f"{type(pipe).__name__} has no unet or transformer to hook")
        self.pipe = pipe
        self.denoiser = hook_denoiser(raw)
        self.tracker = GenerationTracker(self.denoiser, pipe=pipe, cfg_layout=cfg_layout)

    # the scheduler can be swapped on the pipeline at any time: always read it from there
    @property
    def scheduler(self) -> Any:
        return self.pipe.scheduler

    @property
    def state(self) -> GenerationState:
        """Current step / timestep / CFG state (valid inside hooks)."""
        return self.tracker.state

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        return self.denoiser.hook_dict

    def _num_steps(self, kwargs: dict) -> int | None:
        if "num_inference_steps" in kwargs:
            return kwargs["num_inference_steps"]
        param = inspect.signature(self.pipe.__call__).parameters.get("num_inference_steps")
        return param.default if param is not None and isinstance(param.default, int) else None

    @contextmanager
    def attached(self, windows: Sequence[StepWindow] = ()) -> Iterator["HookedDiffusionPipeline"]:
        """Hooks already on the denoiser fire during any ``pipe(...)`` call inside this block."""
        with self.tracker.attached(windows):
            yield self

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], Callable]] = (),
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], Callable]] = (),
        *,
        window: StepWindow | None = None,
        cfg: CFGRows = "both",
        num_inference_steps: int | None = None,
    ) -> Iterator["HookedDiffusionPipeline"]:
        """Temporary hooks gated on ``window`` and ``cfg`` rows, fired by any ``pipe(...)`` call.

        Hooks are ``fn(activation, hook)`` as in TransformerLens; they are removed on exit, also
        when the body raises.
        """
        window = as_window(window)
        self.tracker.check_window(window, num_inference_steps)
        for name, _ in [*fwd_hooks, *bwd_hooks]:
            if isinstance(name, str):
                self.denoiser.check_hook_name(name)
        gate = self.tracker.gate
        with ExitStack() as stack:
            stack.enter_context(
                self.denoiser.hooks(
                    fwd_hooks=[(n, gate(f, window, cfg)) for n, f in fwd_hooks],
                    bwd_hooks=[(n, gate(f, window, cfg)) for n, f in bwd_hooks],
                )
            )
            stack.enter_context(self.attached([] if window.is_all else [window]))
            yield self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the pipeline with whatever hooks are attached to the denoiser."""
        with self.attached():
            return self.pipe(*args, **kwargs)

    def run_with_hooks(
        self,
        *args: Any,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], Callable]] = (),
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], Callable]] = (),
        window: StepWindow | None = None,
        cfg: CFGRows = "both",
        **pipe_kwargs: Any,
    ) -> Any:
        """``pipe(*args, **pipe_kwargs)`` with temporary hooks (see :meth:`hooks`)."""
        with self.hooks(
            fwd_hooks,
            bwd_hooks,
            window=window,
            cfg=cfg,
            num_inference_steps=self._num_steps(pipe_kwargs),
        ):
            return self.pipe(*args, **pipe_kwargs)

    def run_with_cache(
        self,
        *args: Any,
        names_filter: NamesFilter = None,
        timesteps: StepWindow | Sequence[Timestep] | None = None,
        cfg: CFGRows = "both",
        device: str | torch.device | None = None,
        **pipe_kwargs: Any,
    ) -> tuple[Any, DiffusionCache]:
        """Generate and cache hook activations per denoising step.

        Args:
            names_filter: hook name, list of names, predicate, or ``None`` for all.
            timesteps: exact timesteps (must be in the schedule), a :class:`StepWindow`, or
                ``None`` for every step.
            cfg: which CFG rows to keep.
            device: where to store cached tensors (default: where they were computed).

        Returns:
            ``(pipeline output, DiffusionCache)`` keyed by ``(hook_name, timestep)``.
        """
        names = _resolve_names(self.denoiser, names_filter)
        cache = DiffusionCache()
        tracker = self.tracker

        def save(x: Tensor, hook: HookPoint) -> None:
            cache[hook.name, tracker.state.timestep] = x.detach().to(device)

        out = self.run_with_hooks(
            *args,
            fwd_hooks=[(n, save) for n in names],
            window=as_window(timesteps),
            cfg=cfg,
            **pipe_kwargs,
        )
        return out, cache


__all__ = [
    "CFG_ROWS",
    "CFGRows",
    "DiffusionCache",
    "GenerationState",
    "GenerationTracker",
    "HookedDiffusionPipeline",
    "StepWindow",
    "as_window",
]
