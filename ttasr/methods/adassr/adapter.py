"""`AdaSSR`: adaptive self-similarity mining (Fan, Yang, Guo, Liu, IEEE TIP 2024).

Internal learning on ``(y_d, y)`` pairs made with an estimated blur kernel, weighted per
pixel by a self-attention map, with augmentations, an EMA of the weights (eq. 16), a
proximal term to the starting weights (eq. 15), and NIQE early stopping (Sec. IV-A-1).
Optional ADMM rounds (eqs. 5-8) alternate with external learning on synthetic pairs from
an HR image folder. METHODS.md §1 lists every default and where it comes from.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..._config import option
from ...adapters.base import Callback, FitResult, ImageGroup
from ...adapters.config import AdapterConfig
from ...adapters.loop import LoopSettings
from ...adapters.stopping import STOPPING_RULES, GuardedFallback, GuardedHeldOut, HeldOutPairs
from ...adapters.training import blend_weights, snapshot
from ...degradations import (bicubic_kernel, estimate_chroma_noise, estimate_noise_level, response_distance,
                             white_noise_share)
from ...errors import InputError
from ...models import OutputBlend, SRModel, load_model
from ...pairs import AugmentConfig, KernelEstimate, load_kernel
from ..internal import InternalLearning, InternalLearningConfig
from .attention import attention_weights, feature_attention_map, locate_attention, transformer_attention_map
from .attention_cache import AttentionCache
from .heatmap import save_heatmap

__all__ = ["AdaSSR", "AdaSSRConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaSSRConfig(InternalLearningConfig):
    """AdaSSR settings; defaults from the paper's Sec. IV-A unless marked as ours."""

    max_steps: int = option(1500, "T_step = 1,500 (Sec. IV-A-1).", low=0, affects_result=False)
    lr: float = option(1e-4, "Adam, 1e-4 (Sec. IV-A-3).", low=0)
    batch_size: int = option(4, "Batch size 4 (Sec. IV-A-3).", low=1)
    ema_decay: float | None = option(0.99, "EMA decay alpha (ours: 0.99; the paper, preset='paper': 0.999, "
                                     "Sec. IV-A-3; Table V finds 0.99-0.999 best). 0.99 moves the weights more "
                                     "within the budget.", low=0, high=1, high_open=True)
    proximal_weight: float = option(1e-4, "mu = 1e-4 of mu*||theta - theta~||^2 (Sec. IV-A-3).", low=0)
    eval_every: int = option(100, "NIQE every 100 steps (Sec. IV-A-1).", low=1)
    stopping: str = option("auto", "Stopping and selection. Ours, the default 'auto': 'heldout' (one LR square in "
                           "eight is never a training target; the weights with the lowest error there win, the "
                           "unadapted ones included), and with a given (measured) kernel in multi-image mode "
                           "'guarded-fallback' (the same, but weights whose SR output, degraded by that kernel, "
                           "explains the LR worse than the start's cannot win, unless the guard accepts no weights "
                           "at all; benchmarks/RESULTS.md, 'A guard from back-projection', 'A fallback when the guard accepts "
                           "nothing'). The paper (preset='paper'): 'niqe-plateau' (Sec. IV-A-1: NIQE every "
                           "eval_every steps, stop after three decreases below 0.05, keep the best, the unadapted "
                           "weights included; see the README). Also 'consistency' (back-projection error), "
                           "'fixed' (final weights).", choices=STOPPING_RULES)
    heldout_min_gain: float = option(0.01, "heldout: a new best must lower the held-out error by this fraction of "
                                     "the start's error (ours: 1 %, so that noise in the score does not adapt).",
                                     low=0)
    blend: float | Literal["auto"] = option(
        "auto", "Fraction of the adaptation returned, Θ0 + blend·(Θ − Θ0). 'auto' (ours): 0.1 with an estimated "
        "kernel, which kept every proxy photo within 0.1 dB of the unadapted model at 1,500 steps while keeping "
        "part of the gain on noisy or compressed inputs (README, 'Default vs paper'); with a given (measured) "
        "kernel 0.5 of weights the guard of 'guarded-fallback' (or 'heldout-guarded' in multi-image mode) "
        "accepted, else 0.2 (benchmarks/RESULTS.md, 'The kernel decides', 'A guard from back-projection', 'A fallback when the "
        "guard accepts nothing'); with 'guarded-fallback' 1 (the whole output) where JPEG shows in an image "
        "('Whole outputs where JPEG shows'); in single-image mode 0.5 of the held-out pick where JPEG shows in "
        "the image ('Single images: half where JPEG shows'). With an estimated kernel, 0.5 of the held-out pick's "
        "outputs where JPEG shows in an image ('Traces without a kernel'), of step 300's where that pick is the "
        "start in multi-image mode (AdaSSR.start_kept_step; 'Budgets, three new degradations'). The paper: 1.",
        low=0, high=1)
    blend_space: Literal["weights", "outputs", "auto"] = option(
        "auto", "Where blend applies: 'weights' (one network, Θ0 + blend·(Θ − Θ0)) or 'outputs' (blend·N_Θ(y) + "
        "(1 − blend)·N_Θ0(y): two forward passes, never below both ends; save() writes Θ and ttasr.load_model "
        "restores the blend). 'auto' (ours): outputs with stopping 'guarded-fallback' (a given kernel, "
        "multi-image mode) and, with an estimated kernel, where JPEG shows (image_traces); weights "
        "otherwise (benchmarks/RESULTS.md, 'Blending the outputs', 'Traces without a kernel'). The paper: blend 1.")
    kernel_estimator: Literal["auto", "consistency", "bicubic", "given"] = option(
        "auto", "How y_d is made: 'consistency' (ours: an anisotropic Gaussian minimising "
        "||D_k(N(y)) - y||; the paper estimates k 'in a self-learning manner'), 'bicubic' (the ablation's "
        "plain internal learning), 'given' (kernel, e.g. from `ttasr kernel`), 'auto' ('given' when kernel "
        "is set, else 'consistency').")

    blind_estimator: ClassVar[str] = "consistency"
    attention: Literal["auto", "transformer", "features", "none"] = option(
        "auto", "Loss weights: 'transformer' (the paper: last self-attention block of a SwinIR-like model, "
        "attention_model or the adapted model itself), 'features' (ours: parameter-free attention on the "
        "adapted model's deep features), 'none' (uniform), 'auto' (transformer when available, else features).")
    attention_model: str | None = option(
        None, "Checkpoint (path or registered name) whose attention block gives the map; the paper adapts "
        "Real-ESRGAN with attention from SwinIR.")
    attention_pool: int = option(4, "Pooling factor n of the features before global attention (eq. 12; not "
                                 "given in the paper; 4 keeps the token count tractable on CPU).", low=1)
    attention_mix: float = option(0.9, "w = clip(0.9*map + 0.1, 0.1, 3.0) (Sec. IV-A-1).", low=0, high=1)
    attention_dir: str | None = option(None, "If set, write each attention map as a heat-map PNG here.",
                                       affects_result=False)
    augment: bool = option(True, "Use the paper's augmentations (augment_config holds their probabilities); "
                           "False: crops with flips and rotations only.")
    augment_config: AugmentConfig = option(help="Probabilities and ranges of each augmentation.",
                                           factory=AugmentConfig)
    noise_augment: Literal["always", "auto", "never"] = option(
        "always", "Gaussian/Poisson noise augmentation of the inputs: 'always' (the paper), 'never', or 'auto' "
        "(ours: only when the LR images' estimated noise level reaches noise_threshold; on noise-free inputs the "
        "noise teaches the model to smooth, but the estimate misses noise under JPEG, see the README).")
    noise_threshold: float = option(1.5, "noise_augment='auto': noise level (8-bit levels, robust estimate in the "
                                    "flattest regions) from which the LR images count as noisy.", low=0)
    trained_on: Literal["bicubic", "unknown"] = option(
        "bicubic", "The degradation the pretrained model was trained on (ours). 'bicubic' (most SR checkpoints; "
        "Real-ESRGAN-style models are not): when the given kernel is MATLAB bicubic's (within gap_tolerance), the "
        "images carry the model's own training blur and AdaSSR keeps the pretrained weights without training, "
        "unless an image shows JPEG compression (ttasr.pairs.detect_jpeg; benchmarks/RESULTS.md, 'No gap, no adaptation'). "
        "Noise is not checked (estimate_chroma_noise tells colour noise from texture, but this gate was not "
        "measured with it): for noisy bicubic images, set 'unknown'. 'unknown': always adapt.")
    gap_tolerance: float = option(0.05, "trained_on='bicubic': the largest difference of frequency-response "
                                  "magnitude below the LR Nyquist (ttasr.degradations.response_distance) at "
                                  "which the given kernel counts as bicubic's. Gaussian blurs are >= 0.1 away.",
                                  low=0)
    noisy_final: bool = option(
        True, "stopping='auto' and blend='auto' (ours): where at least half of the images show noise (drawn "
        "independently in each colour channel: ttasr.degradations.estimate_chroma_noise >= chroma_noise_threshold; "
        "or white in its finest details, of the brightness or of one channel at a time: "
        "ttasr.degradations.white_noise_share >= noise_share_threshold) and none "
        "JPEG, half of "
        "the last step's change is returned (noisy_blend): of the weights with a given (measured) kernel in "
        "single-image mode, of the outputs otherwise, where training stops at step 300 (noisy_max_steps; at 1,500 "
        "steps half of the final output lost up to 0.97 dB on a pattern photo); all of it where every image shows "
        "white noise (white_noise_blend; in the brightness, or one channel at a time: white_per_channel). "
        "The noise augmentations teach the "
        "model to denoise, which the held-out error cannot see: its targets are the noisy LR (benchmarks/RESULTS.md, "
        "'Noise in the colours', 'The noise rules capped at 300 steps', 'Noise in the brightness', "
        "'Whole where the noise is white').")
    chroma_noise_threshold: float = option(2.5, "noisy_final: the chroma noise level (8-bit levels) from which an "
                                           "image counts as noisy (noise-free photos measured at most 2.33).",
                                           low=0)
    noise_share_threshold: float = option(
        0.3, "noisy_final: the share of 16-px tiles whose finest details look like white noise "
        "(ttasr.degradations.white_noise_share; of the mean of the channels, or of each channel, per_channel=True) "
        "from which an image counts as noisy; it sees noise shared by the channels (luminance noise), which the "
        "chroma level cannot, and colour noise the chroma level misses. Noise-free photos measured at most 0.20 "
        "both ways, photos with luminance noise 0 to 0.98 (benchmarks/RESULTS.md, 'Noise in the brightness', "
        "'Whole where the noise is white').", low=0, high=1)
    blend_check: bool = option(
        True, "blend='auto' with stopping 'guarded-fallback' (ours): the returned blend must do no worse than the "
        "unadapted weights on the held-out pairs; if it does, the next smaller blend of 1 (where JPEG shows), 0.5, "
        "0.2, 0.1 is tried, and if none passes the unadapted weights are kept (blending in weight space can lose "
        "where the whole weights gain, and the reverse; benchmarks/RESULTS.md, 'Checking the blend').")
    admm_rounds: int = option(1, "T_iter rounds of internal learning; rounds after the first start with "
                              "external learning on external_images (eq. 8). Paper default 1.", low=1)
    external_images: str | None = option(None, "Folder or glob of HR images for external learning (DIV2K in "
                                         "the paper).")
    external_steps: int = option(1500, "Steps of each external-learning round (T_step, Sec. IV-A-2).", low=0)
    external_weight: float = option(1e-3, "lambda of the external loss (eq. 1; Sec. IV-A-3: 1e-3).", low=0)

    def counts_as_noisy(self, chroma_noise: float, noise_share: float, channel_share: float = 0.0) -> bool:
        """Whether an image with this chroma noise (:func:`ttasr.degradations.estimate_chroma_noise`),
        white-noise share (:func:`ttasr.degradations.white_noise_share`) and share taken one channel at
        a time (``per_channel=True``) counts as noisy for ``noisy_final``: one reaches its threshold."""
        return chroma_noise >= self.chroma_noise_threshold or self.counts_as_white(noise_share, channel_share)

    def counts_as_white(self, noise_share: float, channel_share: float = 0.0) -> bool:
        """Whether an image with this white-noise share, of the brightness or one channel at a time,
        shows white noise: either reaches ``noise_share_threshold``."""
        return max(noise_share, channel_share) >= self.noise_share_threshold

    @classmethod
    def presets(cls) -> dict[str, Callable[[], AdapterConfig]]:
        return {"paper": cls.paper}

    @classmethod
    def paper(cls, **overrides: Any) -> AdaSSRConfig:
        """The paper's configuration (Sec. IV-A), for reproduction: the NIQE plateau rule
        (Sec. IV-A-1), EMA 0.999, the noise augmentations on every input, 1,500 steps."""
        paper = dict(max_steps=1500, ema_decay=0.999, proximal_weight=1e-4, eval_every=100,
                     stopping="niqe-plateau", noise_augment="always", blend=1.0, heldout_min_gain=0.0)
        return cls(**{**paper, **overrides})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.admm_rounds > 1 and not self.external_images:
            raise InputError("admm_rounds > 1 needs external_images=<folder of HR images>")


class AdaSSR(InternalLearning):
    """AdaSSR: attention-guided self-similarity adaptation with EMA; held-out selection and a blend
    back towards the start by default, NIQE stopping with ``preset="paper"``."""

    name = "adassr"
    config_class = AdaSSRConfig  # type: ignore[assignment]
    config: AdaSSRConfig  # type: ignore[assignment]

    def __init__(self, model: Any, config: AdaSSRConfig | None = None, **overrides: Any) -> None:
        """``preset="paper"`` starts from :meth:`AdaSSRConfig.paper` instead of the default.
        ``attention_model`` may also be a loaded model (SRModel, spandrel descriptor, module):
        it is used as is and kept out of the config, which holds names and paths only."""
        live = overrides.get("attention_model")
        if live is not None and not isinstance(live, str):
            del overrides["attention_model"]
        super().__init__(model, config, **overrides)
        self._attention_cache = AttentionCache()
        self._attention_model: SRModel | None = load_model(live) if live is not None and not isinstance(live, str) \
            else None
        self.attention_maps: list[torch.Tensor] = []
        self.kernel_estimates: list[KernelEstimate] = []

    blend_ladder: ClassVar[tuple[float, ...]] = (1.0, 0.5, 0.2, 0.1)
    """The blends :meth:`checked_blend` tries, largest first, up to the one ``blend='auto'`` chose."""

    blind_blend: ClassVar[float] = 0.1
    """``blend='auto'`` with an estimated kernel (README, 'Default vs paper')."""
    blind_compressed_blend: ClassVar[float] = 0.5
    """``blend='auto'`` of the held-out pick's outputs with an estimated kernel, where JPEG shows
    in an image of the group (benchmarks/RESULTS.md, 'Traces without a kernel')."""
    start_kept_step: ClassVar[int] = 300
    """With an estimated kernel in multi-image mode, where JPEG shows and the held-out rule keeps
    the start, :attr:`blind_compressed_blend` of the outputs of this step's weights is returned
    (:meth:`start_kept_on_jpeg`; claim K of benchmarks/RESULTS.md, 'Where JPEG shows without a kernel:
    the whole pick, and the start kept', adopted in 'Budgets, three new degradations'). The run keeps
    this step's weights where it may apply (:meth:`start_kept_applies`). ``None`` switches it off."""
    start_kept_modes: ClassVar[tuple[str, ...]] = ("multi",)
    """Modes in which :attr:`start_kept_step` applies (single-image mode was not measured)."""
    guarded_blend: ClassVar[float] = 0.5
    """``blend='auto'`` with a given kernel, of weights the guard accepted (benchmarks/RESULTS.md, 'A guard from
    back-projection')."""
    measured_blend: ClassVar[float] = 0.2
    """``blend='auto'`` with a given kernel otherwise, fallback picks included (benchmarks/RESULTS.md, 'The
    kernel decides')."""
    compressed_blend: ClassVar[float] = 1.0
    """``blend='auto'`` of the outputs (``guarded-fallback``) where JPEG compression shows in one
    of the group's images, accepted and fallback picks alike: there the whole adapted output
    gained most, and blending kept the pretrained model's artefacts (benchmarks/RESULTS.md,
    'Whole outputs where JPEG shows')."""

    single_compressed_blend: ClassVar[float] = 0.5
    """``blend='auto'`` of the held-out pick in single-image mode with a given kernel, where JPEG
    shows in the image (weights). The whole pick gained most there but lost 0.10 dB on one photo
    of 27 (benchmarks/RESULTS.md, 'Single images: half where JPEG shows')."""

    noisy_blend: ClassVar[float] = 0.5
    """``blend='auto'`` of the last step's change where the images show noise
    (:meth:`noisy_images`; the last step is :meth:`noisy_budget`'s): the whole final weights lost
    2.5 dB on one pattern photo of 26, half of them gained on every photo (benchmarks/RESULTS.md,
    'Noise in the colours')."""

    white_noise_blend: ClassVar[float] = 1.0
    """``blend='auto'`` where the noise rule fires and every image shows white noise in its brightness
    (``white_noise_share`` >= ``noise_share_threshold``, :meth:`white_noise_fires`; one channel at a
    time too in :attr:`white_per_channel`; ``image_traces``
    then holds ``"white-noise"``): the whole change of the noise rule's step. There the noise dominates
    the finest details, and denoising is most of what training does: on photos no run had used, one
    at a time, the whole step gained +5.869 dB against +2.882 for half (4 photos, every one above
    +0.29), and +11.243 against +7.109 with a measured kernel (benchmarks/RESULTS.md, 'Whole where the
    noise is white', claim Z). Noise seen only in the colours keeps :attr:`noisy_blend`."""

    white_per_channel: ClassVar[tuple[str, ...]] = ("blind-single", "blind-multi", "given-multi", "given-single")
    """Kernel source and mode (:meth:`cell`) where white noise also counts for :attr:`white_noise_blend`
    where it shows one colour channel at a time (``white_noise_share(per_channel=True)``: colour noise,
    which the mean of the channels averages down); every image must show it. On 4 single photos no run
    had used it gained +3.575 dB against +2.118 for half, every photo above +0.13 (claim Z2); several
    images at a time, on 5 new pairs, +3.822 dB against +2.295 (blind, 4 pairs) and +7.078 against +3.679 (a measured
    kernel), every photo above +0.50 (claim Z4) (benchmarks/RESULTS.md, 'Whole where the noise is white',
    claims Z2, Z4). With a measured kernel one image at a time (the whole final change, 1,500 steps), on 6 new
    photos +3.235 dB against +2.974 for half, every photo above +0.20, though three of them gained less whole
    than half (claim Z6; 'Each image its own blend')."""

    white_by_image: ClassVar[bool] = True
    """Several images at a time, where the noise rule fires and only some images show white noise
    (:meth:`white_images`), each image's output is blended by its own reading
    (:meth:`noise_image_blends`): :attr:`white_noise_blend` where it shows white noise, :attr:`noisy_blend`
    elsewhere; the weights are the group's (claim Z5). A pattern photo without white noise beside a
    noisy one lost up to 1.01 dB with the whole step, and half of it kept half of the noisy one's gain.
    On 16 new pairs and triples with one photo that does not show it, +3.082 dB (blind) and +3.221 (a
    measured kernel) against +2.059 and +2.041 with half, every photo above +0.29 (97 % and 90 % of the
    HR's best step and blend); on 5 sets of six +3.074 against +2.036 (89 %); on 12 low-noise pairs +2.257
    against +1.600, worst -0.05 dB: a flat photo with faint noise can gain less whole than half
    (benchmarks/RESULTS.md, 'Each image its own blend')."""

    noisy_max_steps: ClassVar[int] = 300
    """Where the noise rule fires, training stops at this step (or at ``max_steps``, if fewer),
    except in :attr:`noisy_uncapped`. The rule was validated at 300 steps; at 1,500, half of the
    final change lost up to 0.97 dB on a grainy pattern photo, and stopped at 300 it kept every
    photo of that check above +0.43 dB (benchmarks/RESULTS.md, 'The noise rules capped at 300
    steps'). The steps up to it are those of any longer budget (``max_steps`` does not change the
    trajectory), so the 300-step validations hold at every budget."""

    noisy_share_of_images: ClassVar[float] = 0.5
    """The noise rule fires where at least this share of the group's images is noisy
    (:meth:`noisy_images`) and none shows JPEG. Every image (1.0) missed pairs where texture hid
    the noise in one photo: on 6 new `luma-noise` pairs with one image flagged, half gained +2.795 dB
    (worst +1.00) without a kernel against +0.370, and +3.299 against +3.203 with a measured one
    (benchmarks/RESULTS.md, 'Noise in the brightness', claim Y2). One image at a time: that image."""

    noisy_uncapped: ClassVar[tuple[str, ...]] = ("given-single",)
    """Kernel source and mode (:meth:`noisy_budget`) where the noise rule keeps the whole budget: with
    a given kernel one image at a time, the cap gained no more than the final step at 1,500 steps
    (+2.900 against +2.913 dB on four photos; 'The noise rules capped at 300 steps')."""

    fallback_modes: ClassVar[tuple[str, ...]] = ("multi",)
    """Modes in which ``stopping='auto'`` with a given kernel is ``guarded-fallback`` (benchmarks/RESULTS.md,
    'A fallback when the guard accepts nothing'); ``heldout`` in the others."""

    def auto_stopping(self) -> str:
        """The held-out rule; with a given (measured) kernel in :attr:`fallback_modes`, the
        held-out rule guarded by back-projection through that kernel, falling back to the plain
        held-out pick where the guard accepts no weights (only a measured kernel makes the
        guard meaningful: benchmarks/RESULTS.md)."""
        c = self.config
        return "guarded-fallback" if c.kernel_source == "given" and c.mode in self.fallback_modes else "heldout"

    def auto_blend(self, result: FitResult | None = None) -> float:
        """A tenth of the adaptation when the kernel is estimated, half of the pick where JPEG
        shows in an image (:attr:`blind_compressed_blend`; both blends of the outputs where a
        trace shows, :meth:`auto_blend_space`). With a given (measured)
        kernel: half of weights the guard accepted, a fifth of a fallback pick
        (``guarded-fallback``: ``result`` says which), the whole output of either where ``result``
        found JPEG in the images and the outputs are blended (:attr:`compressed_blend`); less
        where the blend check found that blend worse than the start on the held-out pairs
        (:meth:`checked_blend`). A fifth of the held-out rule's pick, half of it in single-image
        mode where JPEG shows in the image (:attr:`single_compressed_blend`); half after
        ``heldout-guarded`` in multi-image mode. Where the image is noisy (:meth:`noisy_images`,
        :meth:`looks_for_noise`), half of the last step's change (:attr:`noisy_blend`, at
        :meth:`noisy_budget`), all of it where every image shows white noise (:meth:`noise_blend`; several
        images at a time where only some do, each image's output gets its own, :meth:`noise_image_blends`).
        benchmarks/RESULTS.md, 'A fallback when the guard accepts nothing'."""
        c, rule = self.config, self.stopping
        if result is not None and "noise" in result.image_traces:
            return self.noise_blend(result.image_traces)
        compressed = result is not None and "jpeg" in result.image_traces
        if c.kernel_source != "given":
            return self.blind_compressed_blend if compressed else self.blind_blend
        if isinstance(rule, GuardedFallback):
            accepted = result is None or GuardedFallback.accepted(result.best_score)
            blend = self.guarded_blend if accepted else self.measured_blend
            if compressed and self.blend_space() == "outputs":
                blend = self.compressed_blend
            return blend if result is None or result.blend_checked is None else min(blend, result.blend_checked)
        if compressed:  # single-image mode, the held-out pick (:meth:`looks_for_jpeg`)
            return self.single_compressed_blend
        guarded = isinstance(rule, GuardedHeldOut) and c.mode == "multi"
        return self.guarded_blend if guarded else self.measured_blend

    def auto_blend_space(self, result: FitResult | None = None) -> Literal["weights", "outputs"]:
        """The outputs with ``guarded-fallback`` (a given kernel in multi-image mode): at the same
        fractions, a blend of the outputs kept every photo of 45 runs within the no-harm bounds,
        where blends of the weights lost 0.11–0.15 dB on one photo in 3 of them (benchmarks/RESULTS.md,
        'Blending the outputs'). With an estimated kernel, the outputs where ``result`` found JPEG
        in the images (:meth:`adapt_group`; half of a weight blend lost 0.19 dB on a photo where the
        whole weights gained 0.5: 'Traces without a kernel'). One network otherwise."""
        if isinstance(self.stopping, GuardedFallback):
            return "outputs"
        blind = self.config.kernel_source != "given"
        return "outputs" if blind and result is not None and result.image_traces else "weights"

    # ---------------------------------------------------------------- pairs and weights
    def augment_config(self, group: ImageGroup) -> AugmentConfig:
        """The paper's augmentations; with ``noise_augment='auto'`` the noise ones only when
        the LR images are noisy (training a model to denoise clean inputs smooths them)."""
        c = self.config
        if not c.augment:
            return dataclasses.replace(AugmentConfig.none(), dihedral=c.flips)
        aug = c.augment_config
        noisy = c.noise_augment == "always"
        if c.noise_augment == "auto":
            level = max(estimate_noise_level(y) for y in group.tensors)
            noisy = level >= c.noise_threshold
            log.info("noise level of the LR images: %.2f levels: noise augmentation %s", level,
                     "on" if noisy else "off")
            self.noise_level = level
        return aug if noisy else dataclasses.replace(aug, gaussian_noise_p=0.0, poisson_noise_p=0.0)

    def estimate_kernel(self, y: torch.Tensor) -> KernelEstimate:
        est = super().estimate_kernel(y)
        log.info("kernel: %s", {k: round(v, 3) if isinstance(v, float) else v for k, v in est.params.items()})
        self.kernel_estimates.append(est)
        return est

    def loss_weights(self, group: ImageGroup, i: int) -> torch.Tensor | None:
        """Eq. 15's per-pixel weights from the attention map (Sec. IV-A-1)."""
        mode = self.config.attention
        if mode == "none":
            return None
        y = group.tensors[i]
        amap = self._attention_map(y, mode)
        self.attention_maps.append(amap)
        if self.config.attention_dir:
            out = Path(self.config.attention_dir) / f"{Path(group.name(i)).stem}_attention.png"
            save_heatmap(amap, out, image=y)
        mix = self.config.attention_mix
        return attention_weights(amap, alpha=mix, floor=1.0 - mix)[None, None]

    def frozen_networks(self) -> Mapping[str, nn.Module]:
        src = self._attention_model
        return {"attention_model": src.module} if src is not None else {}

    def _attention_map(self, y: torch.Tensor, mode: str) -> torch.Tensor:
        pool = self.config.attention_pool
        source = self._transformer_source() if mode in ("auto", "transformer") else None
        if source is not None:
            return self._attention_cache.get_or_compute(
                y, source.module, lambda: transformer_attention_map(source, y, pool),
                method="transformer", pool=pool)
        if mode == "transformer":
            raise InputError(
                f"attention='transformer' needs a transformer SR model: {self.model.architecture} has no "
                "self-attention block; pass attention_model=<SwinIR/HAT/Swin2SR/DAT checkpoint> or use "
                "attention='features'"
            )
        return self._attention_cache.get_or_compute(
            y, self.model.module, lambda: feature_attention_map(self.model, y, pool),
            method="features", pool=pool)

    def _transformer_source(self) -> SRModel | None:
        if self._attention_model is not None or self.config.attention_model is not None:
            if self._attention_model is None:
                self._attention_model = load_model(self.config.attention_model)
            return self._attention_model
        try:
            locate_attention(self.model.module)
            return self.model
        except Exception:  # noqa: BLE001 - InputError, ModelError or lookup failure: no transformer here
            return None

    def prepare(self, group: ImageGroup, student: nn.Module) -> None:
        self.attention_maps, self.kernel_estimates = [], []
        super().prepare(group, student)

    # ---------------------------------------------------------------- no gap, no adaptation
    def looks_for_jpeg(self) -> bool:
        """Whether ``blend='auto'`` depends on JPEG in the images: with a given kernel, where the
        outputs of ``guarded-fallback`` are blended (multi-image mode, :attr:`compressed_blend`),
        and for the plain held-out pick in single-image mode (:attr:`single_compressed_blend`);
        with an estimated kernel and ``stopping='auto'`` (:attr:`blind_compressed_blend`)."""
        c, rule = self.config, self.stopping
        if c.blend != "auto":
            return False
        if c.kernel_source != "given":  # the blind default: the held-out pick, any mode
            return c.stopping == "auto"
        if isinstance(rule, GuardedFallback):
            return self.blend_space() == "outputs"
        return c.mode == "single" and type(rule) is HeldOutPairs

    def compressed_images(self, group: ImageGroup) -> list[str]:
        """The names of the group's images that show JPEG compression (:func:`ttasr.pairs.detect_jpeg`)."""
        from ...pairs.jpeg_trace import jpeg_trace_of

        return [str(group.name(i)) for i, y in enumerate(group.tensors) if jpeg_trace_of(y, group.name(i))]

    def looks_for_noise(self) -> bool:
        """Whether the default rules depend on noise in the images (:attr:`AdaSSRConfig.noisy_final`):
        ``stopping`` and ``blend`` 'auto' (no :class:`Stopping` object passed: the rule replaces the
        selection and shortens the training), in every mode, with a given or an estimated kernel."""
        c = self.config
        return c.noisy_final and c.stopping == "auto" and not self.stopping_given and c.blend == "auto"

    def start_kept_on_jpeg(self, result: FitResult) -> bool:
        """Whether ``result`` is the held-out rule keeping the start where JPEG shows, with an
        estimated kernel, ``stopping`` and ``blend`` 'auto' (no :class:`Stopping` object passed),
        in :attr:`start_kept_modes`: then :meth:`adapt_group` returns part of step
        :attr:`start_kept_step` instead: there the held-out error rises in the first steps while the
        HR error falls, also when the prediction is compared through JPEG (benchmarks/RESULTS.md,
        'The held-out error through JPEG')."""
        return (self.start_kept_applies(result.image_traces) and result.best_step == 0 and result.steps > 0
                and not result.interrupted)

    def start_kept_applies(self, traces: Sequence[str]) -> bool:
        """Whether :meth:`start_kept_on_jpeg` can apply to a group with ``traces``: then the run keeps
        the weights of :attr:`start_kept_step` (``run_loop``'s ``keep_steps``), so that
        :meth:`step_weights` need not train those steps again."""
        c = self.config
        return (self.start_kept_step is not None and c.kernel_source != "given" and c.mode in self.start_kept_modes
                and self.looks_for_jpeg() and not self.stopping_given and "jpeg" in traces)

    def step_weights(self, result: FitResult, group: ImageGroup, callbacks: Sequence[Callback], resume: bool,
                     step: int) -> FitResult:
        """``result`` with the weights of ``step`` selected: those the run kept
        (:attr:`FitResult.kept_weights`), else the first ``step`` steps again, which are those of
        any longer budget (:meth:`run_loop`'s ``max_steps``; their state resumes apart from the
        full run's, ``tag``). The last weights stay ``result``'s."""
        if step >= result.steps:
            return self.final_weights(result)
        final = result.final_weights if result.final_weights is not None else result.weights
        if step in result.kept_weights:
            scored = [h["score"] for h in result.history if h.get("step") == step and "score" in h]
            return dataclasses.replace(result, weights=result.kept_weights[step], best_step=step,
                                       best_score=scored[-1] if scored else None, final_weights=final, kept_weights={})
        short = self.run_loop(group, callbacks, resume, tag=f"step{step}", max_steps=step)
        if short.interrupted:
            return dataclasses.replace(result, interrupted=True, signal=short.signal)
        chosen = self.final_weights(short)
        return dataclasses.replace(result, weights=chosen.weights, best_step=chosen.best_step,
                                   best_score=chosen.best_score, final_weights=final, kept_weights={},
                                   seconds=result.seconds + short.seconds)

    def cell(self) -> str:
        """Kernel source and mode, as the noise rule's settings name them: ``"blind-multi"``,
        ``"given-single"``, ..."""
        c = self.config
        return f"{'given' if c.kernel_source == 'given' else 'blind'}-{c.mode}"

    def noisy_budget(self) -> int | None:
        """The steps the noise rule trains for, where it fires: :attr:`noisy_max_steps`, or
        ``None`` (the whole budget) in :attr:`noisy_uncapped`."""
        return None if self.cell() in self.noisy_uncapped else self.noisy_max_steps

    def noise_blend(self, traces: tuple[str, ...]) -> float:
        """``blend='auto'`` where the noise rule fires (:meth:`noise_traces`): :attr:`white_noise_blend`
        where every image shows white noise, :attr:`noisy_blend` otherwise."""
        return self.white_noise_blend if "white-noise" in traces else self.noisy_blend

    def noise_readings(self, group: ImageGroup) -> dict[str, tuple[float, float, float]]:
        """Each image's name, chroma noise (:func:`ttasr.degradations.estimate_chroma_noise`, 8-bit
        levels), white-noise share (:func:`ttasr.degradations.white_noise_share`: luminance noise) and
        that share taken one channel at a time (``per_channel=True``: colour noise too)."""
        readings = {}
        for i, y in enumerate(group.tensors):
            name, image = str(group.name(i)), y.float().cpu()
            level, share = estimate_chroma_noise(image), white_noise_share(image)
            channels = white_noise_share(image, per_channel=True)
            log.info("%s: %s: chroma noise %.2f levels, white-noise share %.2f (%.2f one channel at a time)",
                     self.name, name, level, share, channels)
            readings[name] = (level, share, channels)
        return readings

    def noisy_images(self, group: ImageGroup,
                     readings: dict[str, tuple[float, float, float]] | None = None) -> list[str]:
        """The names of the group's images whose chroma noise reaches ``chroma_noise_threshold``, or
        whose white-noise share, of the brightness or one channel at a time, reaches
        ``noise_share_threshold`` (:meth:`noise_readings`, where ``readings`` are not given)."""
        readings = self.noise_readings(group) if readings is None else readings
        return [name for name, reading in readings.items() if self.config.counts_as_noisy(*reading)]

    def white_images(self, readings: dict[str, tuple[float, float, float]]) -> list[bool]:
        """Per image of :meth:`noise_readings`, whether it shows white noise for :attr:`white_noise_blend`:
        its white-noise share reaches ``noise_share_threshold``, in its brightness or, where
        :attr:`white_per_channel` names the cell, one channel at a time."""
        per_channel = self.cell() in self.white_per_channel
        return [self.config.counts_as_white(share, channels if per_channel else 0.0)
                for _, share, channels in readings.values()]

    def noise_traces(self, group: ImageGroup,
                     readings: dict[str, tuple[float, float, float]] | None = None) -> tuple[str, ...]:
        """``("noise",)`` where the noise rule fires (:meth:`noise_rule_fires` on :meth:`noisy_images`),
        with ``"white-noise"`` where every image shows white noise (:meth:`white_images`,
        :meth:`white_noise_fires`, :attr:`white_noise_blend`); ``()`` where it does not fire.
        ``readings``: :meth:`noise_readings`, where already taken."""
        readings = self.noise_readings(group) if readings is None else readings
        if not self.noise_rule_fires(len(self.noisy_images(group, readings)), len(readings)):
            return ()
        white = sum(self.white_images(readings))
        return ("noise", "white-noise") if self.white_noise_fires(white, len(readings)) else ("noise",)

    def noise_image_blends(self, readings: dict[str, tuple[float, float, float]]) -> tuple[float, ...]:
        """Where the noise rule fires several images at a time and only some images show white noise
        (:meth:`white_images`), each image's blend of the outputs: :attr:`white_noise_blend` for those,
        :attr:`noisy_blend` for the others (:attr:`white_by_image`, claim Z5); ``()`` where one blend
        serves the group (:meth:`noise_blend`)."""
        white = self.white_images(readings)
        if not self.white_by_image or all(white) or not any(white):  # one image: all or none
            return ()
        return tuple(self.white_noise_blend if w else self.noisy_blend for w in white)

    @classmethod
    def white_noise_fires(cls, white: int, images: int) -> bool:
        """Whether ``white`` of a group's ``images`` showing white noise are enough for
        :attr:`white_noise_blend`: every image (several at a time, half of them let the whole step
        reach a pattern photo without white noise, which lost up to 1.01 dB)."""
        return white >= images

    @classmethod
    def noise_rule_fires(cls, noisy: int, images: int) -> bool:
        """Whether ``noisy`` of a group's ``images`` are enough for the noise rule
        (:attr:`noisy_share_of_images`; JPEG is checked apart)."""
        return noisy >= cls.noisy_share_of_images * images

    def final_weights(self, result: FitResult) -> FitResult:
        """``result`` with its last weights selected (:meth:`noisy_images`): the held-out error
        cannot see denoising, its targets being the noisy LR images."""
        if result.final_weights is None:
            return result
        last = [h for h in result.history if h.get("step") == result.steps and "score" in h]
        return dataclasses.replace(result, weights=result.final_weights, final_weights=None, best_step=result.steps,
                                   best_score=last[-1]["score"] if last else None)

    def training_gap(self, group: ImageGroup, compressed: list[str] | None = None) -> str | None:
        """``None`` when the images may differ from the model's training degradation; else why
        they do not: the given kernel is the bicubic downscaling the model was trained on
        (``trained_on``) and no image shows JPEG compression (:func:`ttasr.pairs.detect_jpeg`).
        Pairs made with that kernel are then the model's own training distribution, so training
        on them can only fit these images' statistics (benchmarks/RESULTS.md, 'No gap, no adaptation').
        ``compressed``: :meth:`compressed_images`, where already known."""
        c, s = self.config, self.model.scale
        if c.trained_on != "bicubic" or c.kernel_source != "given":
            return None
        distance = response_distance(load_kernel(c.kernel), bicubic_kernel(s), s)  # type: ignore[arg-type]
        if distance > c.gap_tolerance:
            return None
        compressed = self.compressed_images(group) if compressed is None else compressed
        if compressed:
            log.info("%s: the kernel is bicubic's, but %s show(s) JPEG compression: adapting", self.name,
                     ", ".join(map(str, compressed)))
            return None
        return (f"the given kernel is bicubic x{s}'s (response difference {distance:.3f} <= gap_tolerance "
                f"{c.gap_tolerance}) and no image shows JPEG compression: the model's own training degradation")

    def kept_pretrained(self, group: ImageGroup, reason: str) -> FitResult:
        """The result of a group that is not trained: the pretrained weights, no steps."""
        names = ", ".join(str(group.name(i)) for i in range(len(group.tensors)))
        log.warning("%s: no adaptation for %s: %s. trained_on='unknown' adapts anyway", self.name, names, reason)
        return FitResult(weights=snapshot(self.model.module), steps=0, best_step=0, best_score=None,
                         stopped_early=False, interrupted=False, seconds=0.0, image_indices=list(group.indices),
                         not_adapted=reason)

    # ---------------------------------------------------------------- the blend check
    def checked_blend(self, result: FitResult, group: ImageGroup) -> float | None:
        """The largest blend of :attr:`blend_ladder`, up to ``blend='auto'``'s, whose weights
        ``Θ0 + blend·(Θ − Θ0)`` do no worse than the unadapted ones on the group's held-out pairs;
        0 when none does; ``None`` when not checked (``blend_check`` off, another blend or rule,
        nothing selected). Blending in weight space is not blending the outputs: a blend can lose
        where the whole weights gain (benchmarks/RESULTS.md, 'Checking the blend'). With ``blend_space='outputs'``
        the blends checked are the outputs' (:class:`~ttasr.models.blending.OutputBlend`)."""
        c, rule = self.config, self.stopping
        if not (c.blend_check and c.blend == "auto" and isinstance(rule, GuardedFallback)) \
                or result.best_step == 0 or result.interrupted or "noise" in result.image_traces:
            return None
        start = self.model.module.state_dict()  # the pretrained weights; blends are new tensors
        net = copy.deepcopy(self.model.module).to(self.device).eval()
        limit = HeldOutPairs.score(rule, self, net, group)
        chosen = self.auto_blend(result)
        outputs = self.blend_space() == "outputs"
        if outputs:
            adapted = copy.deepcopy(net)
            adapted.load_state_dict(result.weights)
        for blend in (b for b in self.blend_ladder if b <= chosen):
            if outputs:
                error = HeldOutPairs.score(rule, self, OutputBlend(net, adapted, blend), group)
            else:
                net.load_state_dict(blend_weights(start, result.weights, blend))
                error = HeldOutPairs.score(rule, self, net, group)
            if error is not None and limit is not None and error <= limit:
                return blend
            log.info("%s: blend %.2g scores %.5g on the held-out pairs, the unadapted weights %.5g: trying less",
                     self.name, blend, error, limit)
        log.warning("%s: every blend of the selected weights (step %d) does worse than the unadapted weights on "
                    "the held-out pairs: keeping the unadapted weights (blend_check=False returns the blend)",
                    self.name, result.best_step)
        return 0.0

    # ---------------------------------------------------------------- ADMM rounds
    def adapt_group(self, group: ImageGroup, callbacks: Sequence[Callback], resume: bool) -> FitResult:
        """Round 1: internal learning; rounds 2..T: external (eq. 8), internal (eq. 10), dual (eq. 7).
        No round at all when the images show no gap to the model's training (:meth:`training_gap`).
        The selected weights' blend is checked on the held-out pairs (:meth:`checked_blend`);
        where ``blend='auto'`` depends on it (:meth:`looks_for_jpeg`), the result records whether
        JPEG shows in the images (``image_traces``, which :meth:`auto_blend` reads)."""
        c = self.config
        looks = self.looks_for_jpeg()
        compressed = self.compressed_images(group) if looks else None
        reason = self.training_gap(group, compressed)
        if reason is not None:
            return self.kept_pretrained(group, reason)
        traces: tuple[str, ...] = ("jpeg",) if looks and compressed else ()
        budget: int | None = None  # the steps to train where the noise rule fires (noisy_budget)
        blends: tuple[float, ...] = ()  # each image's blend there (noise_image_blends)
        if traces:
            log.info("%s: JPEG shows in %s: %s", self.name, ", ".join(map(str, compressed or ())),
                     "the whole adapted output is returned where the blend check allows"
                     if isinstance(self.stopping, GuardedFallback) else
                     f"{self.single_compressed_blend:g} of the selected change is returned"
                     if c.kernel_source == "given" else
                     f"{self.blind_compressed_blend:g} of the selected change's output is returned")
        readings = self.noise_readings(group) if not traces and self.looks_for_noise() else {}
        if readings and (noise := self.noise_traces(group, readings)) \
                and not (self.compressed_images(group) if compressed is None else compressed):
            traces, budget, blends = noise, self.noisy_budget(), self.noise_image_blends(readings)
            share = ", ".join(f"{name} {b:g}" for name, b in zip(readings, blends)) or f"{self.noise_blend(traces):g}"
            log.info("%s: the images show %s: training stops at step %d; the share of that step's change returned: %s",
                     self.name, "white noise" if "white-noise" in traces else "noise",
                     min(c.max_steps, budget or c.max_steps), share)
        keep = (self.start_kept_step,) if budget is None and self.start_kept_applies(traces) else ()
        result = dataclasses.replace(self.run_loop(group, callbacks, resume, max_steps=budget, keep_steps=keep),
                                     image_traces=traces, image_blends=blends)
        if "noise" in traces:
            result = self.final_weights(result)
        elif self.start_kept_on_jpeg(result):
            step = min(c.max_steps, self.start_kept_step or c.max_steps)
            log.info("%s: JPEG shows and the held-out rule kept the start: %g of the output of step %d is returned%s",
                     self.name, self.blind_compressed_blend, step,
                     "" if step in result.kept_weights or step >= result.steps else " (its first steps again)")
            result = self.step_weights(result, group, callbacks, resume, step)
        result = dataclasses.replace(result, kept_weights={})
        if c.admm_rounds <= 1 or result.interrupted:
            return dataclasses.replace(result, blend_checked=self.checked_blend(result, group))
        from ...io import load_images
        from .admm import dual_update, external_learning, proximal_target

        hr = [r.rgb for r in load_images(c.external_images)]
        theta = result.weights
        u = dual_update(None, theta, snapshot(self.model.module))  # Θe⁽¹⁾: the pretrained weights
        for k in range(2, c.admm_rounds + 1):
            target_e = proximal_target(theta, u, -1.0)
            log.info("ADMM round %d/%d: external learning on %d HR images", k, c.admm_rounds, len(hr))
            external = external_learning(
                self.model, target_e, target_e, hr,
                LoopSettings.from_config(c, max_steps=c.external_steps, desc="external"),
                batch_size=c.batch_size, patch_size=c.patch_size, lam=c.external_weight,
                seed=c.seed + k, device=self.device)
            if external.interrupted:
                result.interrupted, result.signal = True, external.signal
                break
            theta_e = external.best
            later = self.run_loop(group, callbacks, resume, start=theta_e,
                                  anchor=proximal_target(theta_e, u, +1.0), tag=f"admm-round-{k}", max_steps=budget)
            result = result.then(later)
            theta = later.weights
            u = dual_update(u, theta, theta_e)
            if later.interrupted:
                break
        result = dataclasses.replace(result, image_traces=traces, image_blends=blends)
        return self.final_weights(result) if "noise" in traces else result

    def describe(self) -> dict[str, str]:
        out: dict[str, str] = {"attention": self.config.attention}
        if self.kernel_estimates:
            out["kernel"] = repr({k: v for k, v in self.kernel_estimates[0].params.items()
                                  if isinstance(v, (int, float, str))})
        return out
