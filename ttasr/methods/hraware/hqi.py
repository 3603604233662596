"""The controller of HR-aware adaptation and its quality indicator (paper Sec. 4.3, eqs. 7-8).

* :func:`high_resolution_quality_indicator` (eq. 7): ``HQI = clamp(1 − D(Up(y), x̂), 0, 1)``
  per sample, with ``Up`` bicubic upsampling of the LR ``y`` to the HR ``x̂``'s size and
  ``D`` the paper's LPIPS. A high HQI means ``x̂`` looks like an upsampled LR image,
  i.e. it is still degraded.
* :func:`controller` (eq. 8): the ``d``-vector ``s`` that scales the degradation
  embedding: ``(1 − HQI)·(1 + v)`` in pretraining (the ground-truth ``x`` is close to
  ``Up(y)`` only when ``y`` is mildly degraded), ``HQI·(1 + v)`` in finetuning (an SR
  output close to ``Up(y)`` gets a stronger degradation, so the SR model need not degrade
  its output to reproduce ``y``). ``v ~ U(−0.1, 0.1)^d`` per sample, for robustness.

Distances ``D`` (callables ``(a, b) -> (B,)`` on ``[0, 1]`` RGB batches):

* :class:`LPIPSDistance`: LPIPS v0.1, AlexNet, through :class:`ttasr.metrics.LPIPS`
  (the ``lpips`` package plus torchvision's ``alexnet-owt-7be5be79.pth``, from a given
  path, ``$TTASR_HOME/metrics/`` or the torch hub cache).
* :class:`EncoderDistance`: **our fallback, not in the paper**, when LPIPS is not
  available: LPIPS's own recipe without its learned heads, on one established encoder's
  feature map: channel-normalise the features at each position, ``1 − cosine`` per
  position, averaged over positions (``mode="spatial"``); or ``1 − cosine`` of the
  globally pooled features (``mode="pooled"``). Clamped to ``[0, 1]``: for the
  non-negative (post-ReLU) features of a CNN it already lies there.

:func:`resolve_hqi_distance` picks one (``"auto"``: LPIPS if it can be built, else the
encoder distance, with a warning) and says which, for the checkpoint's metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from ..._lookup import unknown_name
from ...errors import InputError, MissingDependencyError
from .encoders import EstablishedEncoder

__all__ = [
    "EncoderDistance",
    "HQIDistance",
    "LPIPSDistance",
    "ResolvedDistance",
    "Stage",
    "controller",
    "high_resolution_quality_indicator",
    "resolve_hqi_distance",
    "upsample_lr",
]

log = logging.getLogger(__name__)

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``D(a, b)``: per-sample distance ``(B,)`` of two ``B x 3 x H x W`` batches in ``[0, 1]``."""
Stage = Literal["pretraining", "finetuning"]
HQIDistance = Literal["auto", "lpips", "encoder"]
_STAGES = ("pretraining", "finetuning")
_CHOICES = ("auto", "lpips", "encoder")


# --------------------------------------------------------------------------- eq. 7
def upsample_lr(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``Up(y)``: bicubic upsampling of ``lr`` to ``size``, clamped to ``[0, 1]`` (bicubic
    overshoots at edges, and the distances expect images)."""
    return F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def high_resolution_quality_indicator(sr: torch.Tensor, lr: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Eq. 7: ``clamp(1 − D(Up(y), x̂), 0, 1)`` per sample, shape ``(B,)``.

    ``sr`` is ``x̂`` (``B x 3 x sH x sW``), ``lr`` is ``y`` (``B x 3 x H x W``), ``distance``
    e.g. an :class:`LPIPSDistance`. Gradients follow the caller's mode; the controller
    uses HQI as a signal (see :func:`controller`), so compute it under ``torch.no_grad``.
    """
    if sr.ndim != 4 or lr.ndim != 4 or sr.shape[:2] != lr.shape[:2]:
        raise InputError(f"HQI needs an SR and an LR batch of the same size and channels, got "
                         f"{tuple(sr.shape)} and {tuple(lr.shape)}")
    up = upsample_lr(lr.to(sr.dtype), (int(sr.shape[-2]), int(sr.shape[-1])))
    d = distance(up, sr).reshape(-1)
    if d.shape[0] != sr.shape[0]:
        raise InputError(f"the HQI distance must give one value per sample ({sr.shape[0]}), got {d.shape[0]}")
    return (1 - d).clamp(0, 1)


# --------------------------------------------------------------------------- eq. 8
def controller(
    hqi: torch.Tensor,
    stage: Stage,
    d: int,
    generator: torch.Generator | None = None,
    *,
    noise: float = 0.1,
    detach: bool = True,
    reference: float = 1.0,
) -> torch.Tensor:
    """Eq. 8: the ``B x d`` controller ``s`` from a ``(B,)`` HQI.

    ``"pretraining"``: ``(1 − HQI)·(1 + v)``; ``"finetuning"``: ``HQI·(1 + v)``, with
    ``v ~ U(−noise, noise)^d`` drawn per sample from ``generator`` (paper: ``noise = 0.1``;
    ``0`` gives the bare ``(1 − HQI)`` or ``HQI`` in every entry). ``detach`` stops
    gradients through HQI: ``s`` steers the reconstruction, and letting the SR model lower
    its loss by moving ``s`` would open another way to cheat.

    ``reference`` (finetuning only; ours): the scale ``r`` of the distance ``D = 1 − HQI``
    in the units the reconstructor was pretrained with, ``s = clamp(r − D, 0, r)·(1 + v)``,
    i.e. ``r·HQI_r`` with ``HQI_r = clamp(1 − D/r, 0, 1)``. ``r = 1`` is the paper's ``HQI``
    (LPIPS spans ``[0, 1]``); a distance whose pretraining values are all small (the encoder
    distance: about 0.1) needs its own ``r``, or the finetuning ``s`` lies far outside every
    value the reconstructor was trained on.
    """
    if stage not in _STAGES:
        raise unknown_name("controller stage", str(stage), _STAGES)
    if hqi.ndim != 1:
        raise InputError(f"the controller needs a (B,) HQI, got shape {tuple(hqi.shape)}")
    if d < 1 or not 0 <= noise:
        raise InputError(f"the controller needs d >= 1 and noise >= 0, got d={d}, noise={noise}")
    if not 0 < reference <= 1:
        raise InputError(f"the controller's reference must lie in (0, 1], got {reference}")
    h = hqi.detach() if detach else hqi
    if stage == "pretraining":
        base = 1 - h
    else:
        base = h if reference == 1 else (h - (1 - reference)).clamp(0, reference)
    dtype = h.dtype if h.is_floating_point() else torch.float32
    gen_device = generator.device if generator is not None else h.device
    v = torch.rand(h.shape[0], d, generator=generator, device=gen_device, dtype=dtype).to(h.device)
    v = (2 * v - 1) * noise
    return base.to(dtype)[:, None] * (1 + v)


# --------------------------------------------------------------------------- distances
class LPIPSDistance:
    """LPIPS (v0.1, AlexNet) as a differentiable HQI distance; see :class:`ttasr.metrics.LPIPS`.

    Raises :class:`~ttasr.metrics.files.MetricUnavailableError` when the AlexNet backbone
    cannot be found (and not downloaded), :class:`~ttasr.errors.MissingDependencyError`
    without the ``lpips`` package.
    """

    name = "lpips"

    def __init__(self, lpips_backbone: str | os.PathLike[str] | None = None, *, allow_download: bool = True) -> None:
        from ...metrics.perceptual import LPIPS

        self.metric = LPIPS(lpips_backbone, allow_download=allow_download)
        self.description = f"lpips:alex:{self.metric.backbone_path.name}"

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.metric.distance(a, b)


class EncoderDistance:
    """Our LPIPS stand-in on an established encoder's features (module docstring):
    ``mode="spatial"``: mean over positions of ``1 − cos`` of the channel vectors;
    ``mode="pooled"``: ``1 − cos`` of the globally average-pooled features. In ``[0, 1]``."""

    name = "encoder"

    def __init__(self, encoder: EstablishedEncoder, mode: Literal["spatial", "pooled"] = "spatial") -> None:
        if mode not in ("spatial", "pooled"):
            raise unknown_name("encoder distance mode", str(mode), ("spatial", "pooled"))
        self.encoder, self.mode = encoder, mode
        self.description = f"encoder:{encoder.spec}:{mode}"

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise InputError(f"the encoder distance compares same-shaped batches, got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        return self.between_features(self.encoder(a), self.encoder(b))

    def between_features(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """The distance of two images given their encoder features (``B x C x h x w`` each),
        for callers that already have one of them (pretraining reuses ``E_c(x)`` of FAR)."""
        if self.mode == "pooled":
            fa, fb = fa.mean(dim=(2, 3)), fb.mean(dim=(2, 3))
            return (1 - F.cosine_similarity(fa, fb, dim=1, eps=1e-8)).clamp(0, 1)
        cos = F.cosine_similarity(fa, fb, dim=1, eps=1e-8)  # B x h x w
        return (1 - cos).mean(dim=(1, 2)).clamp(0, 1)


class ResolvedDistance(NamedTuple):
    """The HQI distance chosen by :func:`resolve_hqi_distance`."""

    distance: Distance
    name: Literal["lpips", "encoder"]
    """Which one: record it in the checkpoint metadata (``hqi_distance``)."""
    description: str
    """Details (backbone file or encoder spec), for logs and metadata."""


def resolve_hqi_distance(
    choice: HQIDistance = "auto",
    *,
    encoder: EstablishedEncoder | None = None,
    lpips_backbone: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    encoder_mode: Literal["spatial", "pooled"] = "spatial",
) -> ResolvedDistance:
    """The distance ``D`` of eq. 7 for ``choice``.

    ``"lpips"``: LPIPS or its error (missing package or AlexNet weights, with the ways to
    supply them). ``"encoder"``: :class:`EncoderDistance` on ``encoder``. ``"auto"``: LPIPS
    when it can be built, else a logged fallback to the encoder distance.
    """
    from ...metrics.files import MetricUnavailableError

    if choice not in _CHOICES:
        raise unknown_name("HQI distance", str(choice), _CHOICES)
    if choice in ("lpips", "auto"):
        try:
            lp = LPIPSDistance(lpips_backbone, allow_download=allow_download)
            return ResolvedDistance(lp, "lpips", lp.description)
        except (MetricUnavailableError, MissingDependencyError) as exc:
            if choice == "lpips":
                raise
            if encoder is None:
                raise InputError(f"HQI cannot use LPIPS ({exc}) and has no established encoder to fall back "
                                 "on: supply the LPIPS backbone, or pass encoder=") from exc
            log.warning("HQI: LPIPS is not available (%s); using the %s-feature distance instead "
                        "(recorded as hqi_distance='encoder')", exc, encoder.spec)
    if encoder is None:
        raise InputError("the 'encoder' HQI distance needs encoder= (an EstablishedEncoder)")
    ed = EncoderDistance(encoder, encoder_mode)
    return ResolvedDistance(ed, "encoder", ed.description)
