"""`Adapter`: the small base class every test-time adaptation method derives from.

``fit(images) -> self`` adapts, ``enhance(images=None)`` super-resolves (the fitted images
by default), ``save(path)`` writes a spandrel-loadable safetensors checkpoint. The loop
here is shared: Adam, EMA of weights, the proximal term to the starting weights, seeding,
progress, callbacks, periodic checkpoints with resume, best-weight tracking, and Ctrl-C
that keeps the best weights so far. Methods implement :meth:`Adapter.prepare` and
:meth:`Adapter.sample_batch`, and optionally :meth:`Adapter.compute_loss`,
:meth:`Adapter.evaluate` and :meth:`Adapter.should_stop`.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from .._version import __version__
from ..errors import InputError
from ..models import SRModel, load_model
from ..models.model import forward
from . import checkpointing
from .config import AdapterConfig, config_to_json, config_with
from .training import add_proximal_gradient_, ema_update_, snapshot, weighted_l1

__all__ = ["Adapter", "Batch", "Callback", "FitResult"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound=AdapterConfig)


@dataclass
class Batch:
    """One training batch: model inputs, targets ``scale`` times larger, optional weights."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        w = self.weights.to(device, non_blocking=True) if self.weights is not None else None
        return Batch(self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True), w)


@dataclass
class FitResult:
    """What one adaptation produced (one per image in single-image mode)."""

    weights: dict[str, torch.Tensor]
    steps: int
    best_step: int
    best_score: float | None
    stopped_early: bool
    interrupted: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    image_indices: list[int] = field(default_factory=list)
    final_weights: dict[str, torch.Tensor] | None = None
    """The weights at the last step, when the selected ``weights`` are from another step."""


class Callback:
    """Hooks called during :meth:`Adapter.fit`; override what you need."""

    def on_step(self, adapter: Adapter, step: int, loss: float) -> None:  # noqa: B027
        pass

    def on_eval(self, adapter: Adapter, step: int, score: float | None) -> None:  # noqa: B027
        pass


class Adapter(ABC, Generic[C]):
    """Base class of test-time adaptation methods. See the module docstring."""

    name: ClassVar[str] = "adapter"
    config_class: ClassVar[type[AdapterConfig]] = AdapterConfig
    evaluate_start: ClassVar[bool] = False
    """Score the starting weights before the first step (they can then win "best")."""

    def __init__(self, model: Any, config: C | None = None, **overrides: Any) -> None:
        self.model: SRModel = load_model(model)
        base = config if config is not None else self.config_class()
        if not isinstance(base, self.config_class):
            raise InputError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(base).__name__}")
        self.config: C = config_with(base, **overrides) if overrides else base  # type: ignore[assignment]
        self.device = torch.device(self.config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.results: list[FitResult] = []
        self._batch: Any = None
        self._images: list[Any] = []
        self._tensors: list[torch.Tensor] = []
        self._base_hash: str | None = None

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def prepare(self, images: Sequence[torch.Tensor], student: nn.Module) -> None:
        """Precompute what sampling needs (pairs, kernels, attention) for ``images``."""

    @abstractmethod
    def sample_batch(self, generator: torch.Generator) -> Batch:
        """Draw one training batch on the CPU."""

    def compute_loss(self, student: nn.Module, batch: Batch) -> torch.Tensor:
        """Default data term: (weighted) L1 between ``N(inputs)`` and ``targets``."""
        return weighted_l1(forward(student, batch.inputs), batch.targets, batch.weights)

    def evaluate(self, model: nn.Module, images: Sequence[torch.Tensor]) -> float | None:
        """A score of the current result, lower is better; ``None`` means "not evaluated"."""
        return None

    def should_stop(self, scores: Sequence[float]) -> bool:
        """Early-stopping rule over the evaluation scores so far."""
        return False

    def describe(self) -> dict[str, str]:
        """Extra metadata saved with the adapted checkpoint."""
        return {}

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> dict[str, Any]:
        """Progress and results of the last :meth:`fit`, for logging and inspection."""
        return {
            "method": self.name,
            "fitted": bool(self.results),
            "mode": self.config.mode,
            "results": [
                {k: getattr(r, k) for k in ("steps", "best_step", "best_score", "stopped_early",
                                             "interrupted", "seconds", "image_indices")}
                for r in self.results
            ],
        }

    def fit(self, images: Any, *, callbacks: Sequence[Callback] = (), resume: bool = False) -> Adapter[C]:
        """Adapt the model to ``images`` (any form :func:`ttasr.load_images` accepts)."""
        from ..io import load_images  # noqa: PLC0415 - keeps import of torch-free parts light

        records = load_images(images)
        tensors = [r.rgb for r in records]
        for r, t in zip(records, tensors):
            self._check_image(t, getattr(r, "name", "image"))
        self._batch = records
        self._images, self._tensors = list(records), tensors
        self._base_hash = self.model.weights_hash()
        self.results = []
        groups = [[i] for i in range(len(tensors))] if self.config.mode == "single" else [list(range(len(tensors)))]
        for n, idx in enumerate(groups):
            if len(groups) > 1:
                log.info("%s: image %d/%d", self.name, n + 1, len(groups))
            result = self._adapt(idx, callbacks, resume)
            self.results.append(result)
            if result.interrupted:
                log.warning("interrupted: kept the best weights so far (step %d)", result.best_step)
                break
        return self

    def adapted_model(self, index: int = 0, *, final: bool = False) -> SRModel:
        """The adapted network as an :class:`SRModel` (``index``: image, in single-image mode).

        ``final=True`` gives the weights of the last step instead of the selected best.
        """
        if not self.results:
            raise InputError(f"{type(self).__name__} is not fitted yet: call fit(images) first")
        result = self.results[self._result_for(index)]
        weights = result.final_weights if final and result.final_weights is not None else result.weights
        return self.model.with_weights(weights, method=self.name)

    def enhance(self, images: Any = None, **enhance_options: Any) -> Any:
        """Super-resolve ``images`` with the adapted weights (the fitted images by default).

        Returns the same type that came in; for the fitted images, the type passed to
        :meth:`fit`. ``enhance_options`` go to :func:`ttasr.enhance` (tile, overlap, dtype).
        """
        from ..inference import enhance  # noqa: PLC0415

        if images is None:
            if not self.results:
                raise InputError("enhance() without images needs a fitted adapter: call fit(images) first")
            if self.config.mode == "single":
                outs = [enhance(self.adapted_model(i), [self._images[i]], **enhance_options)[0]
                        for i in range(len(self.results))]
                return self._batch.assemble(outs)
            return enhance(self.adapted_model(), self._batch, **enhance_options)
        if self.config.mode == "single" and len(self.results) != 1:
            raise InputError(
                "single-image mode adapts each image on its own: call fit(new_images).enhance(), "
                "or use mode='multi' to adapt once for a whole camera"
            )
        return enhance(self.adapted_model(), images, **enhance_options)

    def save(self, path: str | Path, index: int | None = None) -> list[Path]:
        """Write the adapted weights as safetensors that spandrel loads like the original.

        In single-image mode with several images, writes ``<stem>-<i>.safetensors`` for each
        unless ``index`` picks one. Returns the written paths.
        """
        from ..models.saving import save_model  # noqa: PLC0415

        if not self.results:
            raise InputError(f"{type(self).__name__} is not fitted yet: call fit(images) first")
        path = Path(path)
        picks = [index] if index is not None else list(range(len(self.results)))
        written = []
        for i in picks:
            target = path if len(picks) == 1 else path.with_name(f"{path.stem}-{i:03d}{path.suffix}")
            r = self.results[self._result_for(i)]
            meta = {
                "ttasr_method": self.name,
                "ttasr_config": config_to_json(self.config),
                "ttasr_version": __version__,
                "base_model_sha256": self._base_hash or self.model.weights_hash(),
                "base_model_source": self.model.source,
                "steps": str(r.steps),
                "best_step": str(r.best_step),
                "images": ",".join(str(getattr(self._images[j], "name", j)) for j in r.image_indices),
                **self.describe(),
            }
            written.append(save_model(self.adapted_model(i), target, meta))
        return written

    # ------------------------------------------------------------------ internals
    def _result_for(self, index: int) -> int:
        if self.config.mode == "multi" or len(self.results) == 1:
            return 0
        if not 0 <= index < len(self.results):
            raise InputError(f"image index {index} out of range: {len(self.results)} images were fitted")
        return index

    def _check_image(self, t: torch.Tensor, name: str) -> None:
        s = self.model.scale
        h, w = t.shape[-2:]
        need = s * 8
        if min(h, w) < need:
            raise InputError(
                f"{name} is {w}x{h}: too small to adapt a x{s} model on (y↓ would be under 8 px). "
                f"Use images of at least {need} px per side, or a model with a smaller scale."
            )
        if not torch.isfinite(t).all():
            raise InputError(f"{name} contains NaN or Inf values: fix or drop this image")

    def _make_generator(self, offset: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.config.seed + 1000003 * offset)
        return g

    def _adapt(
        self,
        indices: list[int],
        callbacks: Sequence[Callback],
        resume: bool,
        *,
        start: dict[str, torch.Tensor] | None = None,
        anchor: dict[str, torch.Tensor] | None = None,
        tag: str = "",
    ) -> FitResult:
        """One adaptation of the images at ``indices``.

        ``start``: initial weights (default: the pretrained ones); ``anchor``: the Θ̃ of
        the proximal term μ‖Θ − Θ̃‖² (default: the initial weights); ``tag`` separates
        resumable states of several rounds over the same images.
        """
        cfg = self.config
        images = [self._tensors[i] for i in indices]
        rid = checkpointing.run_id(
            self.name, tag, config_to_json(cfg), self._base_hash or "",
            *[f"{t.shape}{float(t.double().sum()):.6f}" for t in images],
        )
        ckpt = checkpointing.state_path(cfg.checkpoint_dir, self.name, rid)
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)

        student = self.model.trainable_copy().to(self.device)
        if start is not None:
            student.load_state_dict(start)
        teacher = copy.deepcopy(student) if cfg.ema_decay is not None else None
        for p in (teacher.parameters() if teacher is not None else ()):
            p.requires_grad_(False)
        params = [p for p in student.parameters() if p.requires_grad]
        if cfg.proximal_weight <= 0:
            anchors: list[torch.Tensor] = []
        elif anchor is None:
            anchors = [p.detach().clone() for p in params]
        else:
            named = dict(student.named_parameters())
            anchors = [anchor[n].to(self.device, named[n].dtype) for n, p in named.items() if p.requires_grad]
        optim = torch.optim.Adam(params, lr=cfg.lr)
        generator = self._make_generator(indices[0])
        self.group = list(indices)  # global indices of the images being adapted now
        self.prepare(images, student)

        step, history, scores = 0, [], []
        best = snapshot(teacher if teacher is not None else student)
        best_score: float | None = None
        best_step = 0
        if resume and (state := checkpointing.load_state(ckpt)) is not None:
            student.load_state_dict(state["student"])
            if teacher is not None:
                teacher.load_state_dict(state["teacher"])
            optim.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            step, history, scores = state["step"], state["history"], state["scores"]
            best, best_score, best_step = state["best"], state["best_score"], state["best_step"]
            log.info("resumed %s from step %d (%s)", self.name, step, ckpt)

        def result_model() -> nn.Module:
            return teacher if teacher is not None else student

        if step == 0 and self.evaluate_start:
            # the starting weights are a candidate too: adaptation never returns worse than
            # the pretrained model by its own score (AdaSSR Sec. IV-D: "bounded by" it)
            score0 = self.evaluate(result_model(), images)
            if score0 is not None:
                scores.append(score0)
                history.append({"step": 0, "score": score0})
                best_score = score0
                for cb in callbacks:
                    cb.on_eval(self, 0, score0)

        stopped_early = interrupted = False
        bar = tqdm(total=cfg.max_steps, initial=step, desc=f"{self.name}", disable=not cfg.progress,
                   leave=False, dynamic_ncols=True)
        try:
            while step < cfg.max_steps:
                batch = self.sample_batch(generator).to(self.device)
                loss = self.compute_loss(student, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.name}: loss became {loss.item()} at step {step}; lower lr (now {cfg.lr})"
                    )
                optim.zero_grad(set_to_none=True)
                loss.backward()
                add_proximal_gradient_(params, anchors, cfg.proximal_weight)
                optim.step()
                if teacher is not None:
                    ema_update_(teacher, student, cfg.ema_decay)  # type: ignore[arg-type]
                step += 1
                lv = float(loss.detach())
                history.append({"step": step, "loss": lv})
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.4f}", refresh=False)
                for cb in callbacks:
                    cb.on_step(self, step, lv)
                if step % cfg.eval_every == 0 or step == cfg.max_steps:
                    score = self.evaluate(result_model(), images)
                    for cb in callbacks:
                        cb.on_eval(self, step, score)
                    if score is not None:
                        scores.append(score)
                        history[-1]["score"] = score
                        bar.set_postfix(loss=f"{lv:.4f}", score=f"{score:.3f}")
                        if best_score is None or score < best_score:
                            best, best_score, best_step = snapshot(result_model()), score, step
                        if self.should_stop(scores):
                            stopped_early = True
                            log.info("%s: early stop at step %d (best %.4f at %d)", self.name, step, best_score, best_step)
                            break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    checkpointing.save_state(ckpt, {
                        "student": student.state_dict(),
                        "teacher": teacher.state_dict() if teacher is not None else None,
                        "optimizer": optim.state_dict(), "generator": generator.get_state(),
                        "step": step, "history": history, "scores": scores,
                        "best": best, "best_score": best_score, "best_step": best_step,
                    })
            if not stopped_early and best_score is None:
                best, best_step = snapshot(result_model()), step
        except KeyboardInterrupt:
            interrupted = True
            if best_score is None:
                best, best_step = snapshot(result_model()), step
        finally:
            bar.close()
        final = snapshot(result_model()) if best_step != step else None
        return FitResult(
            weights=best, steps=step, best_step=best_step, best_score=best_score,
            stopped_early=stopped_early, interrupted=interrupted,
            seconds=time.perf_counter() - t0, history=history, image_indices=list(indices),
            final_weights=final,
        )
