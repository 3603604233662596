"""`Adapter`: the small base class every test-time adaptation method derives from.

``fit(images) -> self`` adapts, ``enhance(images=None)`` super-resolves (the fitted images
by default), ``save(path)`` writes a spandrel-loadable safetensors checkpoint. The data
flow is ``fit → adapt_group (per image group) → run_loop → TrainingLoop → Stopping``.

A method implements the hooks :meth:`Adapter.prepare` (precompute for an
:class:`ImageGroup`) and :meth:`Adapter.sample_batch`, and optionally
:meth:`compute_loss`, :meth:`frozen_networks` (helper networks the engine moves to the
device and keeps out of the optimizer), :meth:`make_optimizer`/:meth:`make_scheduler`,
:meth:`adapt_group` (several loop runs, e.g. ADMM rounds) and :meth:`describe`.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import nn

from .._version import __version__
from .._lookup import lookup
from ..errors import InputError
from ..models import SRModel, load_model
from ..models.blending import blend_outputs
from ..models.model import forward
from . import checkpointing
from .config import AdapterConfig
from .distributed import data_parallel_world, wrap_data_parallel
from .loop import LoopResult, LoopSettings, TrainingLoop, Weights
from .speed import training_speed
from .stopping import Stopping, stopping_from_config
from .training import blend_weights, weighted_l1
from .workers import adapt_in_workers, check_workers

__all__ = ["Adapter", "Batch", "Callback", "FitResult", "ImageGroup"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound=AdapterConfig)


@dataclass
class Batch:
    """One training batch: model inputs, targets (any size: ``scale``× larger for SR pairs,
    the inputs' own size for LR reconstruction), optional per-pixel loss weights."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        w = self.weights.to(device, non_blocking=True) if self.weights is not None else None
        return Batch(self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True), w)


@dataclass
class ImageGroup:
    """The images one adaptation runs on: all of them (multi-image mode) or one."""

    records: list[Any]
    """The :class:`ttasr.io.ImageRecord` of each image (``name``, ``path``, ...)."""
    indices: list[int]
    """Their positions among the images passed to :meth:`Adapter.fit`."""
    tensors: list[torch.Tensor]
    """Their ``1x3xHxW`` float tensors in [0, 1], on the CPU."""

    def name(self, i: int) -> str:
        """A file-name-like name of image ``i`` of the group."""
        return str(getattr(self.records[i], "name", f"image{self.indices[i]:03d}"))


@dataclass
class FitResult:
    """What one adaptation produced (one per image in single-image mode)."""

    weights: Weights
    steps: int
    best_step: int
    best_score: float | None
    stopped_early: bool
    interrupted: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    image_indices: list[int] = field(default_factory=list)
    final_weights: Weights | None = None
    """The weights at the last step, when the selected ``weights`` are from another step."""
    signal: int | None = None
    started: float = 0.0
    """Wall-clock time when the loop's steps began (``time.time()``)."""
    not_adapted: str | None = None
    """Why the method did not train on this group (e.g. AdaSSR on images with no gap to the
    model's training degradation); ``None`` when it trained."""
    blend: float = 1.0
    """The fraction of the adaptation that ``weights`` hold (the ``blend`` setting, resolved)."""
    blend_checked: float | None = None
    """The largest blend that did no worse than the unadapted weights on the held-out pairs,
    where the method checked it (AdaSSR's ``blend_check``); ``None`` when not checked."""
    blend_space: Literal["weights", "outputs"] = "weights"
    """Where ``blend`` applies: ``"weights"`` (``weights`` hold the blend) or ``"outputs"``
    (``weights`` hold the whole adaptation; the output is blended with the pretrained model's)."""
    image_traces: tuple[str, ...] = ()
    """Degradations the method found in the group's images that its choices depend on (AdaSSR:
    ``"jpeg"`` where JPEG compression shows, ``"noise"`` where its noise rule fires, with
    ``"white-noise"`` where every image shows it white: AdaSSR.noise_traces); empty when it looked for none or
    found none."""
    image_blends: tuple[float, ...] = ()
    """The blend of the outputs per image of the group (in ``image_indices`` order), where the method
    chose one per image (AdaSSR several images at a time: the whole noise rule's step for images that
    show white noise, half for the others, :meth:`AdaSSR.noise_image_blends`); empty: ``blend`` for
    every image. Only with ``blend_space='outputs'``."""
    kept_weights: dict[int, Weights] = field(default_factory=dict, repr=False)
    """Weights of the steps the method asked the loop to keep (``run_loop``'s ``keep_steps``), by step,
    until it has chosen among them (AdaSSR: :attr:`AdaSSR.start_kept_step`)."""

    def blend_of(self, index: int | None) -> float:
        """The blend of the outputs for fitted image ``index`` (:attr:`image_blends`); ``blend`` for
        ``None`` (new images) or where the blend is one for the group."""
        if index is None or not self.image_blends or index not in self.image_indices:
            return self.blend
        return self.image_blends[self.image_indices.index(index)]

    @classmethod
    def from_loop(cls, r: LoopResult, group: ImageGroup) -> FitResult:
        return cls(weights=r.best, steps=r.steps, best_step=r.best_step, best_score=r.best_score,
                   stopped_early=r.stopped_early, interrupted=r.interrupted, seconds=r.seconds,
                   history=r.history, image_indices=list(group.indices), final_weights=r.final, signal=r.signal,
                   started=r.started, kept_weights=r.kept)

    def then(self, later: FitResult) -> FitResult:
        """``later`` as the result, with steps, time and history of both runs."""
        return FitResult(**{**later.__dict__, "steps": self.steps + later.steps, "started": self.started,
                            "seconds": self.seconds + later.seconds, "history": self.history + later.history})


class Callback:
    """Hooks called during :meth:`Adapter.fit`; override what you need.

    ``on_step`` gets every step's loss, but on a GPU in bursts every ``log_every`` steps
    (reading the loss makes the host wait for the device), so do not time steps with it."""

    def on_step(self, adapter: Adapter[Any], step: int, loss: float) -> None:  # noqa: B027
        pass

    def on_eval(self, adapter: Adapter[Any], step: int, score: float | None) -> None:  # noqa: B027
        pass


class Adapter(ABC, Generic[C]):
    """Base class of test-time adaptation methods. See the module docstring."""

    name: ClassVar[str] = "adapter"
    config_class: ClassVar[type[AdapterConfig]] = AdapterConfig

    def __init__(self, model: Any, config: C | None = None, *, stopping: Stopping | str | None = None,
                 preset: str | None = None, **overrides: Any) -> None:
        """``stopping``: a :class:`Stopping` object, or a rule name (the config's ``stopping``).
        ``preset``: a named configuration of the method (``config_class.presets()``), e.g.
        ``AdaSSR(model, preset="paper")``; ``overrides`` apply on top of it."""
        if isinstance(stopping, str):
            overrides["stopping"], stopping = stopping, None
        self.model: SRModel = load_model(model)
        if preset is not None:
            if config is not None:
                raise InputError("pass either config= or preset=, not both")
            config = lookup(self.config_class.presets(), preset, f"{self.name} preset")()  # type: ignore[assignment]
        base = config if config is not None else self.config_class()
        if not isinstance(base, self.config_class):
            raise InputError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(base).__name__}")
        self.config: C = base.replace(**overrides) if overrides else base  # type: ignore[assignment]
        self.stopping: Stopping = stopping if stopping is not None else \
            stopping_from_config(self.config, self.stopping_rule())
        self.stopping_given = stopping is not None
        """Whether the caller passed a :class:`Stopping` object (a rule of its own, whatever ``config.stopping`` says)."""
        self.device = torch.device(self.config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.results: list[FitResult] = []
        self.interrupted = False
        self.records: Any = None
        """The :class:`ttasr.io.ImageBatch` of the last :meth:`fit`."""
        self._base_hash: str | None = None
        self._rank = 0
        """This process's rank in a distributed multi-image adaptation (0 otherwise)."""
        self.holdout_masks: list[torch.Tensor] | None = None
        """Per-image ``1x1xHxW`` masks (1 = train, 0 = held out) set by a held-out rule."""

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def prepare(self, group: ImageGroup, student: nn.Module) -> None:
        """Precompute what sampling needs (pairs, kernels, attention) for ``group``."""

    @abstractmethod
    def sample_batch(self, generator: torch.Generator) -> Batch:
        """Draw one training batch, its random choices from ``generator`` (a CPU generator),
        ideally on the adapter's device (the engine moves a CPU batch there)."""

    def compute_loss(self, student: nn.Module, batch: Batch) -> torch.Tensor:
        """Default data term: (weighted) L1 between ``N(inputs)`` and ``targets``."""
        return weighted_l1(forward(student, batch.inputs), batch.targets, batch.weights)

    def frozen_networks(self) -> Mapping[str, nn.Module]:
        """Helper networks the method uses (attention model, reconstructor, encoder): the
        engine moves them to the device, puts them in eval mode and freezes them."""
        return {}

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam; the fused CUDA kernel on a GPU (one launch for every parameter)."""
        fused = bool(params) and params[0].device.type == "cuda"
        return torch.optim.Adam(params, lr=self.config.lr, fused=fused or None)

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """A learning-rate scheduler stepped after every step, or ``None``."""
        return None

    def adapt_group(self, group: ImageGroup, callbacks: Sequence[Callback], resume: bool) -> FitResult:
        """One adaptation of ``group``: one loop run. Methods with several rounds override it."""
        return self.run_loop(group, callbacks, resume)

    def describe(self) -> dict[str, str]:
        """Extra metadata saved with the adapted checkpoint."""
        return {}

    def pair_degradation(self, group: ImageGroup, i: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The degradation ``D`` the method assumes made image ``i`` from its HR (``y = D(x)``),
        for rules that check back-projection consistency; ``None`` when the method has none."""
        return None

    def validation_pairs(self, group: ImageGroup) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(input, target, weights)`` pairs never trained on, for held-out selection rules:
        the weights are 1 on held-out target pixels. Methods that support ``holdout_masks``
        (set by the rule before :meth:`prepare`; 1 = train, 0 = held out) implement it."""
        raise InputError(f"{type(self).__name__} has no held-out pairs: use another stopping rule")

    def sampling_rng_state(self) -> torch.Tensor | None:
        """A random state of the method's own (e.g. a generator on the GPU) that a resumed
        run must restore; ``None`` when it draws only from the engine's generator."""
        return None

    def set_sampling_rng_state(self, state: torch.Tensor | None) -> None:
        """Restore what :meth:`sampling_rng_state` returned."""

    def run_id_parts(self, group: ImageGroup) -> list[str]:
        """Extra inputs of the run id beyond the config (e.g. the bytes of a kernel file)."""
        return []

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> dict[str, Any]:
        """Progress and results of the last :meth:`fit`, for logging and inspection."""
        return {
            "method": self.name,
            "fitted": bool(self.results),
            "mode": self.config.mode,
            "interrupted": self.interrupted,
            "results": [
                {k: getattr(r, k) for k in ("steps", "best_step", "best_score", "stopped_early",
                                             "interrupted", "seconds", "image_indices")}
                for r in self.results
            ],
        }

    def fit(self, images: Any, *, callbacks: Sequence[Callback] = (), resume: bool = False) -> Adapter[C]:
        """Adapt the model to ``images`` (any form :func:`ttasr.load_images` accepts).

        Ctrl-C or SIGTERM stops after the current step with the best weights so far; in
        single-image mode the images adapted before it keep their results.
        """
        from ..io import load_images  # noqa: PLC0415 - keeps the import of torch-free parts light

        records = load_images(images)
        for r in records:
            self._check_image(r.rgb, r.name)
        self.records = records
        self._base_hash = self.model.weights_hash()
        self.results, self.interrupted = [], False
        tensors = [r.rgb for r in records]
        groups = [[i] for i in range(len(tensors))] if self.config.mode == "single" else [list(range(len(tensors)))]
        image_groups = [ImageGroup([records[i] for i in idx], idx, [tensors[i] for i in idx]) for idx in groups]
        workers = check_workers(self, len(image_groups))
        if workers > 1:
            if callbacks:
                raise InputError("callbacks run in this process: use workers_per_gpu=1 with callbacks")
            self._fit_in_workers(image_groups, workers, resume)
            return self
        for n, group in enumerate(image_groups):
            if len(image_groups) > 1:
                log.info("%s: image %d/%d", self.name, n + 1, len(image_groups))
            try:
                result = self.adapt_group(group, callbacks, resume)
            except KeyboardInterrupt:
                if not self.results:
                    raise
                self.interrupted = True
                log.warning("interrupted before image group %d: %d of %d adapted", n + 1, n, len(image_groups))
                break
            self.results.append(self._blended(result))
            if result.interrupted:
                self.interrupted = True
                log.warning("interrupted: kept the best weights so far (step %d)", result.best_step)
                break
        for result in self.results:
            self._note_kept_start(result)
        return self

    def blend_fraction(self, result: FitResult | None = None) -> float:
        """The fraction of the adaptation returned: ``config.blend``, or with ``'auto'`` the
        method's own choice (:meth:`auto_blend`), which may depend on what the selection rule
        found in ``result`` (without one: the fraction for weights the rule accepted)."""
        blend = self.config.blend
        return self.auto_blend(result) if blend == "auto" else float(blend)

    def stopping_rule(self) -> str:
        """The name of the selection rule: ``config.stopping``, or with ``'auto'`` the
        method's own choice (:meth:`auto_stopping`)."""
        return self.auto_stopping() if self.config.stopping == "auto" else self.config.stopping

    def auto_stopping(self) -> str:
        """``stopping='auto'``: the whole budget (``'fixed'``), unless a method knows better."""
        return "fixed"

    def auto_blend(self, result: FitResult | None = None) -> float:
        """``blend='auto'``: the whole adaptation, unless a method knows better."""
        return 1.0

    def blend_space(self, result: FitResult | None = None) -> Literal["weights", "outputs"]:
        """Where the blend applies: ``config.blend_space``, or with ``'auto'`` the method's own
        choice (:meth:`auto_blend_space`), which may depend on what ``result`` found."""
        space = self.config.blend_space
        return self.auto_blend_space(result) if space == "auto" else space

    def auto_blend_space(self, result: FitResult | None = None) -> Literal["weights", "outputs"]:
        """``blend_space='auto'``: one network (``'weights'``), unless a method knows better."""
        return "weights"

    def _blended(self, result: FitResult) -> FitResult:
        """``result`` with its weights (selected and final) pulled back towards the pretrained
        ones by the ``blend`` setting (:func:`~ttasr.adapters.training.blend_weights`); in
        ``blend_space='outputs'`` the weights stay whole and the blend is the outputs'
        (:meth:`adapted_model`)."""
        if result.not_adapted is not None:  # nothing trained: nothing to return
            return replace(result, blend=0.0, image_blends=())
        if self.config.blend != "auto" or self.blend_space(result) != "outputs":  # one blend: the setting's
            result = replace(result, image_blends=())
        blend = self.blend_fraction(result)
        if blend == 1.0 and not result.image_blends:
            return result
        # none of the adaptation, or the start selected: one network
        space = self.blend_space(result) if blend > 0.0 and result.best_step > 0 else "weights"
        log.info("%s: returning %.2g of the adaptation in %s (blend=%r)", self.name, blend, space,
                 self.config.blend)
        if space == "outputs":
            return replace(result, blend=blend, blend_space="outputs")
        result = replace(result, image_blends=())
        start = self.model.module.state_dict()
        final = None if result.final_weights is None else blend_weights(start, result.final_weights, blend)
        return replace(result, weights=blend_weights(start, result.weights, blend), final_weights=final, blend=blend)

    def _note_kept_start(self, result: FitResult) -> None:
        """Say so when the selection rule kept the unadapted weights after training: the
        result then enhances like the pretrained model, which users should not mistake for
        adaptation (the paper's NIQE rule does it on most inputs, see the README)."""
        if result.best_step == 0 and result.steps > 0 and not result.interrupted:
            images = ", ".join(map(str, result.image_indices))
            log.warning("%s: the '%s' rule kept the unadapted weights for image(s) %s: no evaluation in %d steps "
                        "scored better than the start. The last step's weights are adapted_model(final=True); "
                        "another rule: stopping=... (see the README's Methods section)",
                        self.name, getattr(self.stopping, "name", type(self.stopping).__name__), images, result.steps)

    def _fit_in_workers(self, groups: list[ImageGroup], workers: int, resume: bool) -> None:
        """:meth:`fit`'s loop over groups, ``workers`` at a time in worker processes.

        Results are kept in image order up to the first group without one (the rest can be
        resumed); an error in any group is raised after that."""
        log.info("%s: %d images, %d worker processes on %s", self.name, len(groups), workers, self.device)
        done, error, interrupted = adapt_in_workers(self, groups, workers=workers, resume=resume)
        for n in range(len(groups)):
            if n not in done:
                break
            self.results.append(self._blended(done[n]))
        self.interrupted = interrupted or any(r.interrupted for r in self.results) or \
            (error is None and len(self.results) < len(groups))
        for result in self.results:
            self._note_kept_start(result)
        if len(self.results) < len(done):
            log.warning("%d adapted images come after one that was not adapted and are not kept; their "
                        "states are saved only if checkpointing was on", len(done) - len(self.results))
        if error is not None:
            raise error

    @property
    def fitted_indices(self) -> list[int]:
        """Positions (among the fitted images) of the images that have a result."""
        return [i for r in self.results for i in r.image_indices]

    def adapted_model(self, index: int | None = None, *, final: bool = False) -> SRModel:
        """The adapted network as an :class:`SRModel` for fitted image ``index`` (single-image mode:
        that image's adaptation, the first without ``index``; several images at a time: the same
        weights, with that image's blend of the outputs where the method chose one per image,
        :attr:`FitResult.image_blends`; without ``index``, for new images, the group's).

        ``final=True`` gives the weights of the last step instead of the selected best. Both are
        blended towards the pretrained weights when the ``blend`` setting is below 1; in
        ``blend_space='outputs'`` the model runs the pretrained and the adapted network and
        blends their outputs (:func:`~ttasr.models.blending.blend_outputs`).
        """
        if not self.results:
            raise InputError(f"{type(self).__name__} is not fitted yet: call fit(images) first")
        result = self.results[self._result_for(index or 0)]
        weights = result.final_weights if final and result.final_weights is not None else result.weights
        adapted = self.model.with_weights(weights, method=self.name)
        if result.blend_space == "outputs":
            return blend_outputs(self.model, adapted, result.blend_of(index))
        return adapted

    def fitted_models(self) -> Callable[[int], SRModel]:
        """``adapted_model(i)`` for the fitted images, each network made once: several images at a
        time, one per blend of the set's weights (:attr:`FitResult.image_blends`); one image at a
        time, each image's own, made when asked for."""
        made: dict[float, SRModel] = {}

        def model(i: int) -> SRModel:
            if self.config.mode == "single":
                return self.adapted_model(i)
            blend = self.results[0].blend_of(i)
            if blend not in made:
                made[blend] = self.adapted_model(i)
            return made[blend]

        return model

    @property
    def blends_per_image(self) -> bool:
        """Whether the fitted images' outputs are blended each by its own fraction
        (:attr:`FitResult.image_blends`): :meth:`adapted_model` then differs per image."""
        return any(r.image_blends for r in self.results)

    def enhance(self, images: Any = None, **enhance_options: Any) -> Any:
        """Super-resolve ``images`` with the adapted weights (the fitted images by default).

        Returns the same type that came in; for the fitted images, the type passed to
        :meth:`fit`. After an interrupted single-image fit, only the images that were
        adapted are returned (a list, in order). ``enhance_options`` go to
        :func:`ttasr.enhance` (tile, overlap, dtype).
        """
        from ..inference import enhance  # noqa: PLC0415

        if images is None:
            if not self.results:
                raise InputError("enhance() without images needs a fitted adapter: call fit(images) first")
            if self.config.mode == "single" or self.blends_per_image:
                count = len(self.results) if self.config.mode == "single" else len(self.records)
                net_of = self.fitted_models()
                outs = [enhance(net_of(i), [self.records[i]], **enhance_options)[0] for i in range(count)]
                return self.records.assemble(outs) if len(outs) == len(self.records) else outs
            return enhance(self.adapted_model(), self.records, **enhance_options)
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
                "ttasr_config": self.config.to_json(),
                "ttasr_version": __version__,
                "base_model_sha256": self._base_hash or self.model.weights_hash(),
                "base_model_source": self.model.source,
                "steps": str(r.steps),
                "best_step": str(r.best_step),
                "images": ",".join(str(self.records[j].name) for j in r.image_indices),
                **self.stopping.describe(),
                **self.describe(),
                "blend": f"{r.blend:g}",
                "blend_space": r.blend_space,
                **({"not_adapted": r.not_adapted} if r.not_adapted else {}),
                **({"image_traces": ",".join(r.image_traces)} if r.image_traces else {}),
                **({"image_blends": ",".join(f"{self.records[j].name}={b:g}" for j, b in zip(r.image_indices,
                                                                                          r.image_blends))}
                   if r.image_blends else {}),
            }
            if r.blend_space == "outputs":  # two networks: the file holds the adapted one, whole
                log.warning("%s: enhance() blends %.2g of the adapted network's output with the pretrained model's; "
                            "'%s' holds the adapted network whole. ttasr.load_model('%s') restores the blend when "
                            "it finds the pretrained model (%s); spandrel loads the whole adaptation",
                            self.name, r.blend, target, target, self.model.source or "give blend_base=")
                if r.image_blends:
                    log.warning("%s: enhance() blended the fitted images each by its own fraction (%s); the file "
                                "records them (image_blends) and restores the group's, %.2g, for any image",
                                self.name, meta["image_blends"], r.blend)
                written.append(save_model(self.model.with_weights(r.weights, method=self.name), target, meta))
            else:
                written.append(save_model(self.adapted_model(i), target, meta))
        return written

    # ------------------------------------------------------------------ the engine
    def run_loop(
        self,
        group: ImageGroup,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
        *,
        start: Weights | None = None,
        anchor: Weights | None = None,
        tag: str = "",
        max_steps: int | None = None,
        keep_steps: Sequence[int] = (),
    ) -> FitResult:
        """Adapt a fresh copy of the model on ``group`` through :class:`TrainingLoop`.

        ``start``: initial weights (default: the pretrained ones); ``anchor``: Θ̃ of the
        proximal term μ‖Θ − Θ̃‖² (default: the initial weights); ``tag`` separates the
        resumable states of several runs over the same images (e.g. ADMM rounds);
        ``max_steps``: a smaller budget than the config's (the steps taken are the same, as
        with a shorter ``max_steps``); ``keep_steps``: steps whose weights the result keeps
        (:attr:`FitResult.kept_weights`).
        """
        cfg = self.config
        rank, world = data_parallel_world() if cfg.mode == "multi" else (0, 1)
        self._rank = rank
        if world > 1:
            tag = f"{tag}rank{rank}of{world}"
        # periodic saves only with checkpoint_every; an interrupted run always saves, to resume
        state_file = checkpointing.state_path(cfg.checkpoint_dir, self.name, self._run_id(group, tag))
        torch.manual_seed(cfg.seed)
        speed = training_speed(cfg, self.device)
        student = self.model.trainable_copy().to(self.device)
        if start is not None:
            student.load_state_dict(start)
        if speed.channels_last:
            student.to(memory_format=torch.channels_last)
        for net in self.frozen_networks().values():
            net.to(self.device).eval().requires_grad_(False)
        generator = self._make_generator(group.indices[0])
        self.holdout_masks = None
        self.stopping.prepare(self, group)
        self.prepare(group, student)
        self.stopping.begin(self, student, group)
        runner = speed.compiled(wrap_data_parallel(student, self.device) if world > 1 else student)
        if world > 1:
            log.info("%s: rank %d of %d, DistributedDataParallel", self.name, rank, world)

        def loss_fn(net: nn.Module, g: torch.Generator) -> torch.Tensor:
            batch = speed.place(self.sample_batch(g).to(self.device))
            with speed.autocast():
                return self.compute_loss(runner if net is student else net, batch)

        def on_step(step: int, loss: float) -> None:
            for cb in callbacks:
                cb.on_step(self, step, loss)

        def on_eval(step: int, score: float | None) -> None:
            for cb in callbacks:
                cb.on_eval(self, step, score)

        budget = {} if max_steps is None else {"max_steps": min(max_steps, cfg.max_steps)}
        loop = TrainingLoop(
            student, loss_fn, LoopSettings.from_config(cfg, desc=self.name, **budget), generator=generator, anchor=anchor,
            optimizer=self.make_optimizer, scheduler=self.make_scheduler,
            evaluate=lambda net: self.stopping.score(self, net, group), score_start=self.stopping.scores_start,
            should_stop=self.stopping.should_stop, improves=self.stopping.improves, on_step=on_step, on_eval=on_eval,
            state_file=state_file, resume=resume, rng_state=(self.sampling_rng_state, self.set_sampling_rng_state),
            keep_steps=keep_steps,
        )
        with speed.backend():
            result = loop.run()
        if state_file is not None and not result.interrupted and not cfg.keep_state:
            checkpointing.remove_state(state_file)
        return FitResult.from_loop(result, group)

    def _make_generator(self, offset: int) -> torch.Generator:
        """The sampling generator of the group starting at image ``offset`` (and of this
        process's rank, when several processes adapt one group together)."""
        offset = offset if self.config.per_image_seeds else 0
        return torch.Generator().manual_seed(self.config.seed + 1000003 * offset + 7919 * self._rank)

    def _run_id(self, group: ImageGroup, tag: str) -> str:
        return checkpointing.run_id(
            self.name, tag, self.config.to_json(result_only=True), self._base_hash or "",
            *[hashlib.sha256(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()
              for t in group.tensors],
            *self.run_id_parts(group),
        )

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
