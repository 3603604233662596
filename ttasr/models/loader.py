"""`load_model`: any spandrel checkpoint, state dict, descriptor, module or registered name."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .model import SizeRequirements, SRModel, forward
from .registry import CHECKPOINTS, resolve_checkpoint

__all__ = ["load_model", "from_spandrel"]

log = logging.getLogger(__name__)

_SUFFIXES = {".pth", ".pt", ".ckpt", ".safetensors", ".bin"}


def load_model(
    source: Any,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    scale: int | None = None,
) -> SRModel:
    """Load a super-resolution model as an :class:`SRModel`.

    ``source`` may be a file (.pth, .pt, .ckpt, .safetensors), a state dict, a spandrel
    ``ImageModelDescriptor``, a plain ``nn.Module`` (give ``scale``, or it is measured on a
    small input), an ``SRModel``, or a registered name (``ttasr models`` lists them).
    """
    model = _load(source, scale)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def _load(source: Any, scale: int | None) -> SRModel:
    if isinstance(source, SRModel):
        return source
    if isinstance(source, nn.Module):
        return _from_module(source, scale)
    if isinstance(source, Mapping):
        return _from_state_dict(dict(source), source="state dict")
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_file():
            return _from_file(path)
        if str(source) in CHECKPOINTS:
            resolved = resolve_checkpoint(str(source))
            model = _from_file(resolved)
            model.source = str(source)
            return model
        if path.suffix.lower() in _SUFFIXES or path.parent != Path("."):
            raise ModelError(f"model file '{source}' does not exist: check the path")
        resolve_checkpoint(str(source))  # raises with "did you mean" and the known names
    try:
        import spandrel

        if isinstance(source, (spandrel.ImageModelDescriptor, spandrel.MaskedImageModelDescriptor)):
            return from_spandrel(source, source="spandrel descriptor")
    except ImportError:  # pragma: no cover - spandrel is a core dependency
        pass
    raise ModelError(
        f"cannot load a model from a {type(source).__name__}: pass a checkpoint path, a state "
        "dict, a spandrel descriptor, an nn.Module (with scale=) or a registered name"
    )


def _from_file(path: Path) -> SRModel:
    import spandrel

    if path.suffix.lower() not in _SUFFIXES:
        raise ModelError(
            f"'{path}' has suffix '{path.suffix}', not a checkpoint format spandrel reads "
            f"({', '.join(sorted(_SUFFIXES))})"
        )
    try:
        state = spandrel.ModelLoader().load_state_dict_from_file(path)
    except Exception as exc:
        raise ModelError(f"cannot read checkpoint '{path}': {exc}") from exc
    model = _from_state_dict(state, source=str(path))
    model.metadata.update(_safetensors_metadata(path))
    return model


def _safetensors_metadata(path: Path) -> dict[str, str]:
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def _from_state_dict(state: dict[str, Any], *, source: str) -> SRModel:
    import spandrel

    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise ModelError(
            f"{source}: spandrel does not recognise this architecture, so ttasr cannot use it. "
            "Supported architectures: https://github.com/chaiNNer-org/spandrel#model-architecture-support; "
            "for your own network pass the nn.Module with scale= instead"
        ) from exc
    return from_spandrel(desc, source=source)


def from_spandrel(desc: Any, *, source: str = "spandrel descriptor") -> SRModel:
    """Wrap a spandrel ``ImageModelDescriptor``; refuses non-SR models."""
    import spandrel

    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ModelError(
            f"{source}: {desc.architecture.name} is a {type(desc).__name__} "
            f"({getattr(desc, 'purpose', '?')}), not a single-image super-resolution model"
        )
    if desc.scale < 2:
        raise ModelError(
            f"{source}: {desc.architecture.name} has scale {desc.scale} ({desc.purpose}); "
            "ttasr adapts super-resolution models with scale >= 2"
        )
    req = desc.size_requirements
    tiling = {"SUPPORTED": "supported", "DISCOURAGED": "discouraged", "INTERNAL": "internal"}[desc.tiling.name]
    module = desc.model
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return SRModel(
        module=module,
        scale=desc.scale,
        architecture=desc.architecture.name,
        in_channels=desc.input_channels,
        out_channels=desc.output_channels,
        size_requirements=SizeRequirements(req.minimum, req.multiple_of, req.square),
        tiling=tiling,
        supports_half=desc.supports_half,
        supports_bfloat16=desc.supports_bfloat16,
        spandrel_compatible=True,
        source=source,
    )


def _from_module(module: nn.Module, scale: int | None) -> SRModel:
    module.eval()
    in_ch = _first_conv_channels(module)
    if scale is None:
        with torch.no_grad():
            p = next(module.parameters(), None)
            probe = torch.rand(1, in_ch, 16, 16, device=p.device if p is not None else "cpu")
            out = forward(module, probe)
        if out.shape[-1] % 16 or out.shape[-2] % 16:
            raise ModelError(f"{type(module).__name__}: cannot infer the scale; pass scale=")
        scale = out.shape[-1] // 16
        log.info("measured scale %d for %s", scale, type(module).__name__)
    if scale < 2:
        raise ModelError(f"{type(module).__name__}: scale {scale}; ttasr adapts super-resolution models with scale >= 2")
    for p in module.parameters():
        p.requires_grad_(False)
    return SRModel(module=module, scale=int(scale), architecture=type(module).__name__,
                   in_channels=in_ch, out_channels=in_ch, source="module")


def _first_conv_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3
