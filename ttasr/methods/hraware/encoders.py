"""Established encoders ``E_c`` for FAR (paper Sec. 4.4, Sec. 5.1, Tab. 3).

``E_c`` is a frozen network whose internal feature map FAR aligns ``E_i``'s Gram
descriptors with. The paper uses CLIP RN50's internal features and reports that an SR
network's features (EDSR) also work (higher NRQM, lower PSNR) and VGG19 a bit worse.
Three implementations of one small interface, :class:`EstablishedEncoder`:

* :class:`OpenCLIPEncoder`: the ``visual`` ResNet of an open_clip CLIP model (``RN50``),
  the output of one of its stages (``stem``, ``layer1`` ... ``layer4``; default
  ``layer2``: 512 channels at stride 8; the paper does not say which "internal feature").
* :class:`TimmEncoder`: any timm model by name, one ``features_only`` stage (default
  index 2, stride 8 on ResNets) or, for models without ``features_only``, its
  ``forward_features`` map.
* :class:`SRTrunkEncoder`: a frozen copy of an SR model's own trunk features, as
  :func:`ttasr.models.features.capture_trunk_features` finds them.

Every encoder takes RGB images in ``[0, 1]`` (it applies its own input normalisation),
returns a ``B x C x h x w`` map, has no trainable parameters, always runs in eval mode
(batch norm keeps its statistics), and lets gradients reach its input, so that FAR can
train the SR model through it. Optional packages are imported when an encoder is built,
never at import time; weights come from a local file when one is given.
"""

from __future__ import annotations

import copy
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._lookup import unknown_name
from ...errors import CheckpointError, InputError, ModelError, require
from ...models.features import capture_trunk_features, crop_valid, padded_size, unwrap_module
from .far import GramDescriptors, gram_descriptors

__all__ = [
    "CLIP_STAGES",
    "ENCODER_KINDS",
    "EstablishedEncoder",
    "OpenCLIPEncoder",
    "SRTrunkEncoder",
    "TimmEncoder",
    "create_established_encoder",
]

log = logging.getLogger(__name__)

CLIP_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
"""Stages of CLIP's ModifiedResNet, in order (open_clip's ``forward_intermediates`` indices 0-4)."""
ENCODER_KINDS = ("clip-rn50", "timm", "sr-trunk")

# OpenAI CLIP's input normalisation (open_clip.constants.OPENAI_DATASET_MEAN / _STD)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _offline() -> bool:
    return bool(os.environ.get("TTASR_OFFLINE"))


def _weights_file(path: str | os.PathLike[str] | None, what: str, argument: str) -> Path | None:
    """``path`` as a ``Path`` after checking it is a file (before any optional import)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{argument}={str(path)!r} is not a file: give the path of the {what} weights, "
                              f"or leave {argument} unset to use the package's own download")
    return p


class EstablishedEncoder(nn.Module, ABC):
    """A frozen encoder ``E_c``: ``[0, 1]`` RGB ``B x 3 x H x W`` -> ``B x C x h x w``."""

    spec: str = "established-encoder"
    """What it is, for checkpoint metadata (e.g. ``"clip-rn50:layer2"``)."""
    _probe_size = 64

    def __init__(self) -> None:
        super().__init__()
        self._channels: int | None = None

    @abstractmethod
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The feature map of ``images`` (already checked), differentiable in ``images``."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"{type(self).__name__} needs B x 3 x H x W images, got shape {tuple(images.shape)}")
        return self.features(images)

    def descriptors(self, images: torch.Tensor) -> GramDescriptors:
        """Eq. 10's Gram descriptors of :meth:`features`: two ``B x C`` tensors."""
        return gram_descriptors(self(images))

    @property
    def channels(self) -> int:
        """``C``, the channels of the feature map (found once, by a small probe)."""
        if self._channels is None:
            p = next(self.parameters(), None)
            probe = torch.zeros(1, 3, self._probe_size, self._probe_size,
                                device=p.device if p is not None else None, dtype=p.dtype if p is not None else None)
            with torch.no_grad():
                self._channels = int(self(probe).shape[1])
        return self._channels

    def train(self, mode: bool = True) -> EstablishedEncoder:
        """Always eval: a frozen encoder keeps its batch-norm statistics and dropout off."""
        return super().train(False)  # type: ignore[return-value]

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.train(False)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return (images.to(mean.dtype) - mean) / std

    def _set_normalisation(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.register_buffer("mean", torch.tensor(mean).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


# --------------------------------------------------------------------------- CLIP RN50
def _clip_stem(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The 3-conv stem of CLIP's ModifiedResNet (a method in recent open_clip, inline in
    older releases, whose activations were named differently)."""
    stem = getattr(visual, "stem", None)
    if callable(stem) and not isinstance(stem, nn.Module):
        return stem(x)  # type: ignore[no-any-return]
    for i in (1, 2, 3):
        x = F.relu(getattr(visual, f"bn{i}")(getattr(visual, f"conv{i}")(x)))
    pool: nn.Module = visual.get_submodule("avgpool")
    return pool(x)  # type: ignore[no-any-return]


def _create_clip(open_clip: Any, model_name: str, path: Path | None, pretrained: str) -> Any:
    """An open_clip CLIP model: from a local file (open_clip's format, else OpenAI's own
    ``RN50.pt`` archive), or from open_clip's download of ``pretrained``."""
    if path is None:
        return open_clip.create_model(model_name, pretrained=pretrained, device="cpu")
    try:
        return open_clip.create_model(model_name, pretrained=str(path), device="cpu")
    except Exception as first:  # noqa: BLE001 - not open_clip's layout: try OpenAI's archive
        try:
            return open_clip.load_openai_model(str(path), precision="fp32", device="cpu")
        except Exception:  # noqa: BLE001 - report the first, more telling error
            raise first from None


class OpenCLIPEncoder(EstablishedEncoder):
    """One stage of an open_clip CLIP ResNet image tower (paper: ``RN50``).

    ``weights`` is a local checkpoint file: open_clip's format (``open_clip.create_model(name,
    pretrained=<file>)``) or OpenAI's ``RN50.pt`` (``open_clip.load_openai_model``).
    Without it open_clip's own download of ``pretrained`` (``"openai"``) is used, unless
    ``allow_download=False`` or ``$TTASR_OFFLINE``.
    Only the ``visual`` tower up to ``layer`` is kept.
    """

    def __init__(
        self,
        model_name: str = "RN50",
        *,
        layer: str = "layer2",
        weights: str | os.PathLike[str] | None = None,
        pretrained: str = "openai",
        allow_download: bool = True,
    ) -> None:
        super().__init__()
        if layer not in CLIP_STAGES:
            raise unknown_name("CLIP stage", layer, CLIP_STAGES)
        path = _weights_file(weights, f"open_clip {model_name}", "weights")
        open_clip = require("open_clip", "clip", "The CLIP established encoder (open_clip_torch)")
        if path is None and (not allow_download or _offline()):
            raise CheckpointError(
                f"the CLIP {model_name} encoder needs its weights and downloads are disabled: pass "
                f"weights='/path/to/{model_name}.pt' (an open_clip or OpenAI CLIP checkpoint), or allow "
                f"open_clip to download pretrained={pretrained!r}")
        try:
            model = _create_clip(open_clip, model_name, path, pretrained)
        except Exception as exc:  # network, hub or file errors all mean "no weights"
            where = f"from {path}" if path else f"pretrained={pretrained!r} (download)"
            raise CheckpointError(f"cannot load the CLIP {model_name} weights {where}: {type(exc).__name__}: "
                                  f"{exc}. Pass weights= with a local checkpoint file") from exc
        visual = model.visual
        if not all(hasattr(visual, n) for n in CLIP_STAGES[1:]):
            raise ModelError(f"CLIP {model_name}'s image tower is not a ResNet ({type(visual).__name__}); "
                             "use an RN* model, or a timm model with TimmEncoder")
        keep = CLIP_STAGES.index(layer)
        for name in ("attnpool", *CLIP_STAGES[keep + 1:]):  # never run: drop them
            if hasattr(visual, name):
                delattr(visual, name)
        self.visual = visual
        self.layer = layer
        self.spec = f"clip-{model_name.lower()}:{layer}"
        self._set_normalisation(_CLIP_MEAN, _CLIP_STD)
        self._freeze()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        p = next(self.visual.parameters())
        x = _clip_stem(self.visual, self._normalise(images).to(p.dtype))
        for name in CLIP_STAGES[1:CLIP_STAGES.index(self.layer) + 1]:
            x = getattr(self.visual, name)(x)
        return x


# --------------------------------------------------------------------------- timm
class TimmEncoder(EstablishedEncoder):
    """One feature stage of a timm model (``timm.create_model(name, features_only=True,
    out_indices=(feature_index,))``), or its ``forward_features`` map when the model has
    no ``features_only`` mode.

    ``pretrained_file`` is a local weight file (timm's ``pretrained_cfg_overlay={"file":
    ...}``); with ``pretrained=True`` and no file, timm's own download is used.
    ``pretrained=False`` gives random weights (for tests).
    """

    def __init__(
        self,
        model_name: str,
        *,
        feature_index: int = 2,
        pretrained: bool = True,
        pretrained_file: str | os.PathLike[str] | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        path = _weights_file(pretrained_file, f"timm {model_name}", "pretrained_file")
        timm = require("timm", "clip", "A timm established encoder")
        kwargs: dict[str, Any] = dict(timm_kwargs)
        if path is not None:
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        else:
            kwargs.update(pretrained=pretrained)
        self.feature_index: int | None = feature_index
        try:
            try:
                model = timm.create_model(model_name, features_only=True, out_indices=(feature_index,), **kwargs)
            except (RuntimeError, AssertionError, TypeError) as exc:
                if "feature" not in str(exc).lower():
                    raise
                log.info("timm %s has no features_only mode; using forward_features", model_name)
                model = timm.create_model(model_name, num_classes=0, **kwargs)
                self.feature_index = None
        except (CheckpointError, InputError):
            raise
        except Exception as exc:  # unknown names, downloads, bad files
            if "Unknown model" in str(exc) or "unknown model" in str(exc).lower():
                names = timm.list_models(f"*{model_name.split('.')[0][:6]}*")[:5]
                raise InputError(f"timm has no model {model_name!r}; similar: {', '.join(names) or 'none'}") from exc
            hint = "; pass pretrained_file= with a local weight file" if kwargs.get("pretrained") else ""
            raise CheckpointError(f"cannot build timm model {model_name!r}: {type(exc).__name__}: {exc}{hint}") from exc
        self.model = model
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean, std = tuple(cfg.get("mean", _IMAGENET_MEAN)), tuple(cfg.get("std", _IMAGENET_STD))
        if len(mean) != 3 or len(std) != 3:
            mean, std = _IMAGENET_MEAN, _IMAGENET_STD
        self._set_normalisation(mean, std)
        where = "forward_features" if self.feature_index is None else str(feature_index)
        self.spec = f"timm:{model_name}:{where}"
        self._freeze()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self._normalise(images)
        if self.feature_index is None:
            out = self.model.forward_features(x)
        else:
            out = self.model(x)[0]
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"{self.spec} does not give a B x C x h x w feature map (got {shape}); "
                             "choose a convolutional model or another feature_index")
        return out


# --------------------------------------------------------------------------- SR trunk
class SRTrunkEncoder(EstablishedEncoder):
    """The trunk features of a frozen copy of an SR model (paper Tab. 3: EDSR's features).

    ``model`` is an ``SRModel``, a spandrel descriptor or a module; it is deep-copied, so
    adapting the original later does not change this encoder. ``layer`` names the layer
    whose output is taken; ``None`` uses :func:`~ttasr.models.features.capture_trunk_features`'
    rule (the last trunk-resolution feature map before the upsampler). The input is
    padded to the model's size requirements and the padded border cropped off again.
    """

    _probe_size = 32

    def __init__(self, model: Any, *, layer: str | None = None) -> None:
        super().__init__()
        source = copy.deepcopy(model)
        self.network = unwrap_module(source)
        self._source = (source,)  # a tuple: the wrapper is not a second registered submodule
        self.layer = layer
        self.layer_name: str | None = None
        self.spec = f"sr-trunk:{type(self.network).__name__}:{layer or 'auto'}"
        self._freeze()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        feat, name = capture_trunk_features(self._source[0], images, self.layer, grad=True)
        if self.layer_name is None:
            self.layer_name = name
            log.debug("%s: trunk features from layer %r", self.spec, name)
        return crop_valid(feat, padded_size(self._source[0], hw), hw)


# --------------------------------------------------------------------------- factory
def create_established_encoder(
    kind: str,
    *,
    sr_model: Any = None,
    name: str | None = None,
    layer: str | int | None = None,
    weights: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
) -> EstablishedEncoder:
    """An encoder by kind: ``"clip-rn50"`` (``layer``: a CLIP stage, ``weights``: a local
    checkpoint), ``"timm"`` (``name``: the timm model, ``layer``: the feature index,
    ``weights``: a local file) or ``"sr-trunk"`` (``sr_model``, ``layer``: a layer name)."""
    if kind == "clip-rn50":
        return OpenCLIPEncoder("RN50", layer=str(layer or "layer2"), weights=weights, allow_download=allow_download)
    if kind == "timm":
        if not name:
            raise InputError("the timm established encoder needs name= (a timm model name, e.g. 'resnet50')")
        return TimmEncoder(name, feature_index=2 if layer is None else int(layer), pretrained_file=weights)
    if kind == "sr-trunk":
        if sr_model is None:
            raise InputError("the sr-trunk established encoder needs sr_model= (the SR model before adaptation)")
        return SRTrunkEncoder(sr_model, layer=None if layer is None else str(layer))
    raise unknown_name("established encoder", kind, ENCODER_KINDS)
