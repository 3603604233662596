"""The LR reconstruction network of HR-aware adaptation (paper Sec. 4.2 eq. 4, Sec. 5.1).

``ŷ = R(x, s ⊙ E_d(y), E_i(x))``: an HR image ``x`` is degraded into the LR image ``ŷ``
that should match the real LR ``y``. Pretrained once on synthetic pairs, then frozen.

* :class:`DegradationEncoder` ``E_d``: residual CNN on the LR image, 16 residual blocks,
  global average pooling, a ``d = 512`` embedding (paper Sec. 5.1).
* :class:`ImageEncoder` ``E_i``: residual CNN, 6 residual blocks of 64 channels, no
  spatial downsampling (Sec. 5.1); its feature map feeds both ``R`` and FAR.
* :class:`Reconstructor` ``R``: SRResNet trunk with StyleGAN2 modulated convolutions
  (Sec. 5.1; LWay's "conv -> 4 modulated residual blocks -> conv"), ending at LR size.
* :class:`AlignmentLayers` ``φ, ψ``: the linear maps of FAR (eq. 11).
* :class:`LRReconstructionNetwork` bundles them with a :class:`ReconstructorConfig` and
  saves / loads itself as one safetensors file.

Choices the paper leaves open (each a config field where it could matter):

* Residual blocks are EDSR-style ``conv -> ReLU -> conv`` plus identity, no batch norm
  (SRResNet's BN is dropped, as in EDSR and every later SR trunk: BN statistics of
  synthetic pre-training batches would not carry over to finetuning).
* ``E_d`` keeps the LR resolution; after the blocks a conv lifts to ``d`` channels, the
  map is average-pooled and one linear layer gives ``e`` (signed, so that ``s ⊙ e`` can
  move the style either way).
* ``R`` merges ``f = E_i(x)`` at full HR resolution by concatenating it with the first
  conv's features and fusing with a 1x1 conv (``feature_fusion="concat"``), or by adding
  a 1x1 projection of ``f`` (``"add"``). Concatenation lets the fusion weigh the two
  streams; the paper only says ``R`` takes ``f``.
* ``R`` goes from HR to LR after its modulated blocks by pixel-unshuffle by the scale
  (lossless space-to-depth, ``C -> C·s²`` channels, works for any integer ``s``), a 3x3
  conv back to ``C`` channels, LeakyReLU, and a 3x3 conv to RGB. ``lr_skip=True`` adds
  the area-downsampled ``x`` to the output (``R`` then learns a residual); off by default,
  as in LWay's description.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..._config import PlainConfig, option
from ..._fs import atomic_write
from ...errors import CheckpointError, InputError
from .far import GramDescriptors
from .modulated import ModulatedConv2d

__all__ = [
    "AlignmentLayers",
    "DegradationEncoder",
    "ImageEncoder",
    "LRReconstructionNetwork",
    "ModulatedResidualBlock",
    "Reconstructor",
    "ReconstructorConfig",
    "ResidualBlock",
    "read_network_metadata",
]

log = logging.getLogger(__name__)

NETWORK_FORMAT = "ttasr-hraware-lr-reconstruction-1"


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ReconstructorConfig(PlainConfig):
    """Architecture of the LR reconstruction network. Defaults: paper Sec. 5.1 where it
    says, LWay / SRResNet conventions where it does not (marked "ours")."""

    scale: int = option(4, "SR scale s: R maps an (sH x sW) HR image to H x W.", low=1)
    embed_dim: int = option(512, "Dimension d of the degradation embedding e and of the controller s "
                            "(paper Sec. 5.1: 512).", low=1)
    degradation_channels: int = option(64, "Channels inside E_d (ours: 64, as E_i).", low=1)
    degradation_blocks: int = option(16, "Residual blocks of E_d (paper Sec. 5.1: 16).", low=0)
    image_channels: int = option(64, "Channels C_i of E_i's feature map (paper Sec. 5.1: 64).", low=1)
    image_blocks: int = option(6, "Residual blocks of E_i (paper Sec. 5.1: 6).", low=0)
    reconstructor_channels: int = option(64, "Channels of R's trunk (ours: 64, SRResNet's width).", low=1)
    reconstructor_blocks: int = option(4, "Modulated residual blocks of R (LWay: 4).", low=0)
    kernel_size: int = option(3, "Kernel size of every spatial conv (ours: 3).", low=1)
    demodulate: bool = option(True, "Demodulate R's modulated convs (StyleGAN2 eq. 3; LWay: yes).")
    feature_fusion: Literal["concat", "add"] = option(
        "concat", "How R takes E_i(x) at full resolution: 'concat' with its first conv's features, then a "
        "1x1 conv; 'add' a 1x1 projection of it (ours; the paper only says R takes it).")
    lr_skip: bool = option(False, "Add the area-downsampled HR image to R's output, so R learns a residual "
                           "(ours; off as in LWay).")
    far_dim: int = option(512, "Channels C_c of the established encoder's feature map that φ, ψ map to "
                          "(CLIP RN50 layer2: 512; layer3: 1024).", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise InputError(f"ReconstructorConfig.kernel_size must be odd, got {self.kernel_size}")


# --------------------------------------------------------------------------- blocks
def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class ResidualBlock(nn.Module):
    """EDSR-style residual block: ``x + conv(ReLU(conv(x)))``, no batch norm."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel_size)
        self.conv2 = _conv(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ModulatedResidualBlock(nn.Module):
    """``x + mconv(LeakyReLU(mconv(x, e)), e)`` with StyleGAN2 modulated convs."""

    def __init__(self, channels: int, style_dim: int, kernel_size: int = 3, demodulate: bool = True) -> None:
        super().__init__()
        self.conv1 = ModulatedConv2d(channels, channels, kernel_size, style_dim, demodulate)
        self.conv2 = ModulatedConv2d(channels, channels, kernel_size, style_dim, demodulate)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x, embedding), 0.2), embedding)


def _check_image(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{what} must be a B x 3 x H x W tensor, got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------- encoders
class DegradationEncoder(nn.Module):
    """``E_d``: LR image ``B x 3 x H x W`` -> degradation embedding ``B x d``."""

    def __init__(self, embed_dim: int = 512, channels: int = 64, blocks: int = 16, kernel_size: int = 3) -> None:
        super().__init__()
        self.head = _conv(3, channels, kernel_size)
        self.body = nn.Sequential(*[ResidualBlock(channels, kernel_size) for _ in range(blocks)])
        self.lift = _conv(channels, embed_dim, kernel_size)
        self.fc = nn.Linear(embed_dim, embed_dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        _check_image(y, "E_d's LR input")
        h = self.head(y)
        h = self.lift(self.body(h) + h)
        return self.fc(F.leaky_relu(h, 0.2).mean(dim=(2, 3)))  # type: ignore[no-any-return]


class ImageEncoder(nn.Module):
    """``E_i``: HR image ``B x 3 x H x W`` -> feature map ``B x C_i x H x W`` (no downsampling)."""

    def __init__(self, channels: int = 64, blocks: int = 6, kernel_size: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.head = _conv(3, channels, kernel_size)
        self.body = nn.Sequential(*[ResidualBlock(channels, kernel_size) for _ in range(blocks)])
        self.tail = _conv(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, "E_i's HR input")
        h = self.head(x)
        return h + self.tail(self.body(h))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- reconstructor
class Reconstructor(nn.Module):
    """``R(x, c, f)``: HR image ``x`` (``B x 3 x sH x sW``), controlled embedding ``c = s ⊙ e``
    (``B x d``) and image features ``f = E_i(x)`` -> LR image ``B x 3 x H x W``.

    conv -> fuse ``f`` -> modulated residual blocks (+ trunk skip, as SRResNet) ->
    pixel-unshuffle by ``s`` -> conv -> LeakyReLU -> conv to RGB (module docstring).
    """

    def __init__(
        self,
        scale: int,
        embed_dim: int = 512,
        channels: int = 64,
        blocks: int = 4,
        image_channels: int = 64,
        kernel_size: int = 3,
        *,
        demodulate: bool = True,
        feature_fusion: Literal["concat", "add"] = "concat",
        lr_skip: bool = False,
    ) -> None:
        super().__init__()
        self.scale, self.feature_fusion, self.lr_skip = scale, feature_fusion, lr_skip
        self.head = _conv(3, channels, kernel_size)
        fuse_in = channels + image_channels if feature_fusion == "concat" else image_channels
        self.fuse = nn.Conv2d(fuse_in, channels, 1)
        self.blocks = nn.ModuleList(
            [ModulatedResidualBlock(channels, embed_dim, kernel_size, demodulate) for _ in range(blocks)]
        )
        self.down = _conv(channels * scale * scale, channels, kernel_size)
        self.tail = _conv(channels, 3, kernel_size)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        _check_image(x, "R's HR input")
        s = self.scale
        if x.shape[-2] % s or x.shape[-1] % s:
            raise InputError(f"R's HR input must be a multiple of the scale {s} in size, got "
                             f"{x.shape[-2]}x{x.shape[-1]}; crop it first")
        if features.shape[0] != x.shape[0] or features.shape[-2:] != x.shape[-2:]:
            raise InputError(f"R's image features must match the HR input in batch and size: "
                             f"{tuple(features.shape)} vs {tuple(x.shape)}")
        h = self.head(x)
        if self.feature_fusion == "concat":
            h = self.fuse(torch.cat([h, features], dim=1))
        else:
            h = h + self.fuse(features)
        trunk = h
        for block in self.blocks:
            trunk = block(trunk, embedding)
        h = F.pixel_unshuffle(trunk + h, s) if s > 1 else trunk + h
        out = self.tail(F.leaky_relu(self.down(h), 0.2))
        if self.lr_skip:
            out = out + F.avg_pool2d(x, s) if s > 1 else out + x
        return out  # type: ignore[no-any-return]


class AlignmentLayers(nn.Module):
    """FAR's ``φ`` and ``ψ`` (eq. 11): linear maps ``C_i -> C_c`` of the mean and max
    Gram descriptors of ``E_i``. Trained only in pretraining."""

    def __init__(self, image_dim: int, target_dim: int) -> None:
        super().__init__()
        self.phi = nn.Linear(image_dim, target_dim)
        self.psi = nn.Linear(image_dim, target_dim)

    def forward(self, descriptors: GramDescriptors) -> GramDescriptors:
        """``(φ(avg), ψ(max))`` of ``E_i``'s descriptors, comparable with ``E_c``'s."""
        return GramDescriptors(self.phi(descriptors.avg), self.psi(descriptors.max))


# --------------------------------------------------------------------------- the network
class LRReconstructionNetwork(nn.Module):
    """``E_d``, ``E_i``, ``R``, ``φ``, ``ψ`` with their :class:`ReconstructorConfig`.

    ``forward(x, y, control)`` is eq. 4: ``R(x, control ⊙ E_d(y), E_i(x))``. ``metadata``
    is a JSON-able dict saved with the weights (training steps, which HQI distance was
    used, the established encoder's spec, ...).
    """

    def __init__(self, config: ReconstructorConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        c = config or ReconstructorConfig()
        if overrides:
            c = c.replace(**overrides)
        self.config = c
        self.degradation_encoder = DegradationEncoder(c.embed_dim, c.degradation_channels, c.degradation_blocks,
                                                      c.kernel_size)
        self.image_encoder = ImageEncoder(c.image_channels, c.image_blocks, c.kernel_size)
        self.reconstructor = Reconstructor(
            c.scale, c.embed_dim, c.reconstructor_channels, c.reconstructor_blocks, c.image_channels,
            c.kernel_size, demodulate=c.demodulate, feature_fusion=c.feature_fusion, lr_skip=c.lr_skip,
        )
        self.alignment = AlignmentLayers(c.image_channels, c.far_dim)
        self.metadata: dict[str, Any] = {}

    @property
    def scale(self) -> int:
        return self.config.scale

    def controlled_embedding(self, y: torch.Tensor, control: torch.Tensor | float) -> torch.Tensor:
        """``s ⊙ E_d(y)``; ``control`` is a ``B x d`` tensor (``1 x d`` and ``B x 1`` broadcast),
        or a number (``1.0`` gives LWay's uncontrolled embedding)."""
        e = self.degradation_encoder(y)
        if isinstance(control, torch.Tensor):
            b, d = e.shape
            if control.ndim == 0:
                control = control.reshape(1, 1)
            if control.ndim != 2 or control.shape[0] not in (1, b) or control.shape[1] not in (1, d):
                raise InputError(f"the controller must be a B x d = {b} x {d} tensor (or 1 x d, B x 1, a "
                                 f"number), got shape {tuple(control.shape)}")
            control = control.to(e.dtype)
        return control * e

    def reconstruct_with_features(
        self, x: torch.Tensor, y: torch.Tensor, control: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R(x, s ⊙ E_d(y), f), f)`` with ``f = E_i(x)``, so FAR can reuse ``f``."""
        if x.shape[0] != y.shape[0]:
            raise InputError(f"HR and LR batches differ in size: {x.shape[0]} vs {y.shape[0]}")
        f = self.image_encoder(x)
        return self.reconstructor(x, self.controlled_embedding(y, control), f), f

    def forward(self, x: torch.Tensor, y: torch.Tensor, control: torch.Tensor | float) -> torch.Tensor:
        """Eq. 4: the LR reconstruction ``R(x, s ⊙ E_d(y), E_i(x))``, ``B x 3 x H x W``."""
        return self.reconstruct_with_features(x, y, control)[0]

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write weights, config and metadata (``self.metadata`` updated by ``metadata``) to
        one safetensors file, atomically. Returns the path."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {**self.metadata, **(metadata or {})}
        try:
            meta_json = json.dumps(meta, sort_keys=True)
        except TypeError as exc:
            raise InputError(f"the metadata of {path} must be JSON-able: {exc}") from exc
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": NETWORK_FORMAT, "config": self.config.to_json(),
                                                   "metadata": meta_json})
        self.metadata = meta
        log.debug("saved the LR reconstruction network to %s", path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, config: ReconstructorConfig | None = None,
             map_location: str | torch.device = "cpu") -> LRReconstructionNetwork:
        """The network saved at ``path``. With ``config``, the stored config must equal it.

        Raises :class:`~ttasr.errors.CheckpointError` naming the file when it is not such a
        network, its config differs from ``config``, or its tensors do not fit its config.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no LR reconstruction network at {path}: the file does not exist")
        stored, meta = _read_header(path)
        if config is not None and config != stored:
            diff = {k: (v, getattr(config, k)) for k, v in stored.to_dict().items() if getattr(config, k) != v}
            raise CheckpointError(
                f"{path} holds an LR reconstruction network with another config: "
                + ", ".join(f"{k}={a!r} in the file, {b!r} expected" for k, (a, b) in sorted(diff.items()))
            )
        net = cls(stored)
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        expected = net.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong = sorted(k for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing {_few(missing)}")
            if unexpected:
                parts.append(f"unexpected {_few(unexpected)}")
            if wrong:
                parts.append("wrong shape " + _few([f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}"
                                                    for k in wrong]))
            raise CheckpointError(f"the tensors in {path} do not match its config ({stored.to_json()}): "
                                  + "; ".join(parts))
        net.load_state_dict(tensors)
        net.to(map_location)
        net.metadata = meta
        return net


def _few(items: list[str], n: int = 5) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _read_header(path: Path) -> tuple[ReconstructorConfig, dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # any parse failure means "not a file we wrote"
        raise CheckpointError(f"{path} is not a safetensors file ({type(exc).__name__}: {exc})") from exc
    if header.get("format") != NETWORK_FORMAT:
        raise CheckpointError(f"{path} is not an HR-aware LR reconstruction network (format "
                              f"{header.get('format')!r}, expected {NETWORK_FORMAT!r})")
    try:
        config = ReconstructorConfig.from_dict(json.loads(header["config"]))
        meta = json.loads(header.get("metadata", "{}"))
    except Exception as exc:  # a bad or outdated config is refused, whatever the cause
        raise CheckpointError(f"{path} has an unreadable LR reconstruction config: {exc}") from exc
    return config, meta


def read_network_metadata(path: str | Path) -> tuple[ReconstructorConfig, dict[str, Any]]:
    """The config and metadata of a saved network, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no LR reconstruction network at {path}: the file does not exist")
    return _read_header(path)
