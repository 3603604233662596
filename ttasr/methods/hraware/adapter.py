"""`HRAware`: HR-aware finetuning (Zhang and Yao, 2024, Sec. 4.2 eq. 6; METHODS §2).

On random LR crops ``y`` of the test images, with ``x̂ = N(y)``::

    s = HQI(Up(y), x̂)·(1 + v)                                 (eqs. 7-8, stage "finetuning")
    L = ℓ1(R(x̂, s ⊙ E_d(y), E_i(x̂)), y) + λ·L_far(x̂)          (eq. 6, FAR eq. 11)

Only the SR model is trained; the LR reconstruction network (``E_d``, ``E_i``, ``R``,
``φ``, ``ψ``) and the established encoder ``E_c`` are frozen helper networks. ``E_c``
must be the encoder the reconstructor was pretrained with (:mod:`.established`): it is
rebuilt from the reconstructor's metadata, and a different one is refused. For an SR-trunk
``E_c`` that is the trunk of the SR model the reconstructor was pretrained with; when
another model is adapted, that model is loaded again from its recorded name or file
(hash checked) and FAR is refused with a clear message if it cannot be, rather than
silently dropped: pass ``far=False`` to adapt without FAR.

Selection: ``stopping="fixed"`` by default (paper Fig. 9: with FAR the LPIPS of the
finetuned model does not degrade within 600 iterations, so the last weights are kept);
every stopping rule of the engine works, e.g. ``"niqe-plateau"`` (a no-reference metric),
except ``"heldout"``, which needs internal pairs. By default only a twentieth of the
change is returned (``blend=0.05``; benchmarks/RESULTS.md, Fig. 9): the full fine-tuning with the CPU-built
default reconstructor loses PSNR on every proxy preset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..._config import option
from ...adapters.config import AdapterConfig
from ...errors import CheckpointError
from .encoders import EstablishedEncoder, SRTrunkEncoder
from .established import build_encoder, encoder_fingerprint, rebuild_encoder
from .far import FarNorm, feature_alignment_regularizer, gram_descriptors
from .hqi import ResolvedDistance, controller, high_resolution_quality_indicator, resolve_hqi_distance
from .reconstruction import ReconstructionAdapter, ReconstructionConfig

__all__ = ["HRAware", "HRAwareConfig", "HRAWARE_LR"]

log = logging.getLogger(__name__)

ENCODER_REFERENCE = 0.1
"""The controller's reference ``r`` with the encoder distance when the reconstructor records
none: the mean pretraining control ``1 − HQI`` of the cpu-small recipe is about 0.1."""

HRAWARE_LR: dict[str, float] = {"ESRGAN": 1e-5, "SPAN": 5e-5, "RealESRGAN Compact": 5e-5}
"""Finetuning learning rate by architecture (ours, inside the paper's 1e-5 to 5e-5: the
values were lost from its text): large GAN-trained RRDB networks take the low end, small
networks the high end; others 2e-5."""


@dataclass(frozen=True)
class HRAwareConfig(ReconstructionConfig):
    """HR-aware finetuning; defaults from the paper's Sec. 5.1 where it says, else marked."""

    blend: float = option(0.05, "Fraction of the fine-tuning returned, Θ0 + blend·(Θ − Θ0) (ours: 0.05; the paper: "
                          "1). With the CPU-built default reconstructor the full fine-tuning loses 0.5-1.8 dB on "
                          "every proxy preset at 500 steps, a twentieth of it stays within 0.03 dB (benchmarks/RESULTS.md, "
                          "Fig. 9); with a reconstructor of the paper's scale try blend=1.", low=0, high=1)
    controller: bool = option(True, "Scale the degradation embedding by s = HQI·(1 + v) (eq. 8); False: s = 1 "
                              "(paper Tab. 2 ablation).")
    controller_noise: float = option(0.1, "v ~ U(-noise, noise)^d of the controller (paper: 0.1).", low=0)
    controller_reference: float | Literal["auto"] = option(
        "auto", "Scale r of HQI's distance D in the reconstructor's units: s = clamp(r − D, 0, r)·(1 + v) "
        "(ours; 1 is the paper's HQI·(1 + v)). 'auto' (default): 1 for LPIPS, as in the paper; for the encoder "
        "distance the mean pretraining control 1 − HQI the reconstructor recorded (final_control), else 0.1 (about "
        "that of the cpu-small recipe), since that distance's values are small and r = 1 puts s far outside what "
        "the reconstructor was trained on (benchmarks/RESULTS.md, Fig. 9).", low=0, low_open=True, high=1)
    far: bool = option(True, "Add the Feature-Alignment Regularizer (eq. 11). It needs the reconstructor's own "
                       "E_c; False adapts without it (paper Tab. 2 ablation).")
    far_weight: float | None = option(None, "λ of FAR in eq. 6; None: the λ the reconstructor was pretrained "
                                      "with (eq. 5 uses the same λ), else 0.01.", low=0)
    far_norm: FarNorm = option("l2", "FAR's norm: 'l2' (the paper's Frobenius norm) or 'squared'.")
    hqi_distance: Literal["auto", "lpips", "encoder"] = option(
        "auto", "HQI's distance (eq. 7): 'lpips' (the paper), 'encoder' (ours: 1 − cosine of E_c features), "
        "'auto' (LPIPS when its AlexNet weights are found, else the encoder distance; logged and saved in the "
        "checkpoint's metadata).")
    hqi_encoder_mode: Literal["spatial", "pooled"] = option(
        "spatial", "The encoder distance: per-position cosine averaged ('spatial') or of pooled features.")
    lpips_backbone: str | None = option(None, "Path of torchvision's alexnet-owt-7be5be79.pth for LPIPS.")
    established_encoder: str | None = option(
        None, "E_c. None: the one the reconstructor was pretrained with (its metadata). Otherwise it must be "
        "that one: 'sr-trunk[:MODEL]' (MODEL: a file or name of the SR model whose trunk it was), 'clip-rn50' "
        "or 'timm:NAME'.")
    encoder_layer: str | None = option(None, "E_c's layer; None: the recorded one.")
    encoder_weights: str | None = option(None, "A local file of E_c's weights: the pretraining SR model for "
                                         "'sr-trunk', or a CLIP / timm weight file.")

    @classmethod
    def presets(cls) -> dict[str, Callable[[], AdapterConfig]]:
        return {"paper": cls.paper}

    @classmethod
    def paper(cls, **overrides: Any) -> HRAwareConfig:
        """The paper's fine-tuning as this SDK rebuilds it (Sec. 5.1): the whole change is
        returned (``blend=1``); everything else is the default."""
        return cls(**{"blend": 1.0, **overrides})


class HRAware(ReconstructionAdapter[HRAwareConfig]):
    """HR-aware finetuning (module docstring). ``reconstructor``: an
    :class:`~ttasr.methods.hraware.LRReconstructionNetwork`, a file or a registered name.

    >>> sr = ttasr.HRAware(model, reconstructor="reconstructor-x4.safetensors").fit(lr_images).enhance()
    """

    name = "hraware"
    config_class = HRAwareConfig
    lr_table: ClassVar[Mapping[str, float]] = HRAWARE_LR
    default_lr: ClassVar[float] = 2e-5

    def __init__(self, model: Any, config: HRAwareConfig | None = None, *, reconstructor: Any = None,
                 **overrides: Any) -> None:
        super().__init__(model, config, reconstructor=reconstructor, **overrides)
        self.encoder: EstablishedEncoder | None = None
        """``E_c`` (after the first :meth:`fit`): for FAR and the encoder distance of HQI."""
        self.distance: ResolvedDistance | None = None
        """HQI's distance (after the first :meth:`fit`)."""
        self._far_weight = 0.0
        self._reference = 1.0

    # ------------------------------------------------------------------ E_c, HQI
    def _setup(self) -> None:
        """``E_c`` and HQI's distance, once: checked against the reconstructor's record."""
        if self.encoder is not None or self.distance is not None:
            return
        c, net = self.config, self.reconstructor
        record = net.metadata.get("established_encoder")
        record = record if isinstance(record, dict) else None
        where = f"the reconstructor ({self._network_where})"
        encoder: EstablishedEncoder | None = None
        if c.far:
            if record is None:
                raise CheckpointError(
                    f"{where} does not record the established encoder E_c it was pretrained with, so FAR cannot "
                    "be used (its φ, ψ fit one E_c only): pretrain it with `ttasr pretrain-reconstructor`, or "
                    "pass far=False")
            if net.metadata.get("far_trained") is False:
                raise CheckpointError(f"{where} was pretrained without FAR (its φ, ψ are untrained): pass far=False")
            encoder = rebuild_encoder(record, adapted_model=self.model, spec=c.established_encoder,
                                      layer=c.encoder_layer, weights=c.encoder_weights, where=where)
            if encoder.channels != net.config.far_dim:
                raise CheckpointError(f"E_c ({encoder.spec}) has {encoder.channels} channels, but {where} maps to "
                                      f"{net.config.far_dim}: they were not pretrained together")
            recorded = (net.metadata.get("pretrain_config") or {}).get("far_weight")
            self._far_weight = float(c.far_weight if c.far_weight is not None else
                                     recorded if isinstance(recorded, (int, float)) else 0.01)
        if c.controller:
            if encoder is None and c.hqi_distance != "lpips":
                encoder = self._hqi_encoder(record, where)
            self.distance = resolve_hqi_distance(c.hqi_distance, encoder=encoder, lpips_backbone=c.lpips_backbone,
                                                 encoder_mode=c.hqi_encoder_mode)
            self._reference = self._controller_reference()
            used = net.metadata.get("hqi_distance")
            if used and used != self.distance.name:
                log.warning("HQI uses the %s distance here but %s was pretrained with the %s distance: the "
                            "controller's scale differs from pretraining", self.distance.name, where, used)
        self.encoder = encoder

    def _controller_reference(self) -> float:
        """``r`` of the finetuning controller (:func:`.hqi.controller`): the config's number, or
        for ``"auto"`` 1 with LPIPS (the paper) and, with the encoder distance, the mean
        pretraining control the reconstructor recorded (else :data:`ENCODER_REFERENCE`)."""
        c = self.config
        if c.controller_reference != "auto":
            return float(c.controller_reference)
        if self.distance is None or self.distance.name == "lpips":
            return 1.0
        recorded = self.reconstructor.metadata.get("final_control")
        if isinstance(recorded, (int, float)) and 0 < recorded <= 1:
            return float(recorded)
        log.info("HQI: %s records no pretraining control scale; the controller's reference is %g",
                 self._network_where, ENCODER_REFERENCE)
        return ENCODER_REFERENCE

    def _hqi_encoder(self, record: dict[str, Any] | None, where: str) -> EstablishedEncoder:
        """An encoder for HQI's encoder distance without FAR: the recorded ``E_c`` when it can
        be had (the controller then sees the distance it was pretrained with), else this
        model's own trunk."""
        c = self.config
        if record is not None:
            try:
                return rebuild_encoder(record, adapted_model=self.model, spec=c.established_encoder,
                                       layer=c.encoder_layer, weights=c.encoder_weights, where=where)
            except CheckpointError as exc:
                log.info("HQI: %s; using the adapted model's own trunk for the encoder distance", exc)
        if c.established_encoder is not None:
            return build_encoder(c.established_encoder, layer=c.encoder_layer, weights=c.encoder_weights,
                                 sr_model=self.model)
        return SRTrunkEncoder(self.model, layer=c.encoder_layer)

    # ------------------------------------------------------------------ the method
    def control(self, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor | float:
        """Eq. 8, finetuning: ``s = HQI(Up(y), x̂)·(1 + v)``, HQI without gradients."""
        if self.distance is None:
            return 1.0
        with torch.no_grad():
            hqi = high_resolution_quality_indicator(sr.detach().float().clamp(0, 1), lr.float(), self.distance.distance)
        return controller(hqi, "finetuning", self.reconstructor.config.embed_dim, self._noise_generator(),
                          noise=self.config.controller_noise, reference=self._reference)

    def regularizer(self, sr: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        """``λ·L_far(x̂)`` (eq. 11) with the frozen ``φ, ψ`` and ``E_c``; gradients reach ``N``."""
        if not self.config.far or self.encoder is None or self._far_weight == 0:
            return None
        net = self.reconstructor
        far = feature_alignment_regularizer(gram_descriptors(features), self.encoder.descriptors(sr),
                                            net.alignment.phi, net.alignment.psi, norm=self.config.far_norm)
        return self._far_weight * far

    def frozen_networks(self) -> Mapping[str, nn.Module]:
        self._setup()
        nets: dict[str, nn.Module] = {"reconstructor": self.reconstructor}
        if self.encoder is not None:
            nets["established_encoder"] = self.encoder
        return nets  # LPIPS, when HQI uses it, builds its network on the device it is called on

    def describe(self) -> dict[str, str]:
        self._setup()
        out = super().describe()
        out.update(controller=str(self.config.controller), far=str(self.config.far and self.encoder is not None))
        if self.distance is not None:
            out.update(hqi_distance=self.distance.name, hqi_distance_detail=self.distance.description,
                       controller_reference=f"{self._reference:g}")
        if self.encoder is not None:
            out["established_encoder"] = self.encoder.spec
            if self.config.far:
                out["far_weight"] = f"{self._far_weight:g}"
        return out

    def run_id_parts(self, group: Any) -> list[str]:
        self._setup()
        parts = super().run_id_parts(group)
        if self.encoder is not None:
            parts.append(encoder_fingerprint(self.encoder))
        if self.distance is not None:
            parts.append(self.distance.description)
            if self._reference != 1:
                parts.append(f"reference:{self._reference:g}")
        return parts
