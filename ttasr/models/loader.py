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

__all__ = ["from_spandrel", "load_model"]

log = logging.getLogger(__name__)

# Exactly the suffixes spandrel's ModelLoader.load_state_dict_from_file reads; it refuses
# any other (e.g. .bin) with a ValueError, so accepting more here only defers the error.
_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")


def load_model(
    source: Any,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    scale: int | None = None,
    blend_base: Any = None,
) -> SRModel:
    """Load a super-resolution model as an :class:`SRModel`.

    ``source`` may be a file (.safetensors, .pth, .pt, .ckpt), a state dict, a spandrel
    ``ImageModelDescriptor``, a plain ``nn.Module`` (give ``scale``, or it is measured on a
    small input), an ``SRModel``, or a registered name (``ttasr models`` lists them).

    For every source but a plain ``nn.Module``, ``scale`` is a check: a model with another
    scale is refused with a :class:`ModelError` (for a name, before anything is downloaded).

    A file that an adapter saved from an output blend (metadata ``blend_space: outputs``) holds
    the adapted network whole; it is blended again with its pretrained model, ``blend_base``
    or else the ``base_model_source`` of its metadata, whose weights must match the recorded
    ``base_model_sha256`` (:func:`~ttasr.models.blending.blend_outputs`).
    """
    model = _load(source, scale)
    if model.metadata.get("blend_space") == "outputs" and float(model.metadata.get("blend", "1")) < 1.0:
        model = _restore_output_blend(model, blend_base)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def _restore_output_blend(adapted: SRModel, base_source: Any) -> SRModel:
    """The output blend an adapter saved (``adapted`` is its adapted network): with its base
    model, checked against the recorded hash; without one, an error that says what to pass."""
    from .blending import blend_outputs

    meta = adapted.metadata
    recorded = meta.get("base_model_source", "")
    base_source = base_source if base_source is not None else recorded
    fix = f"pass the pretrained model it was adapted from: ttasr.load_model('{adapted.source}', blend_base=...)"
    try:
        base = _load(base_source, adapted.scale) if base_source not in ("", "module", "state dict") else None
    except ModelError as exc:
        raise ModelError(f"'{adapted.source}' blends its output with the pretrained model '{recorded}', which "
                         f"cannot be loaded ({exc}); {fix}") from exc
    if base is None:
        raise ModelError(f"'{adapted.source}' blends its output with a pretrained model that was not loaded from "
                         f"a file or name; {fix}")
    expected = meta.get("base_model_sha256")
    if expected and base.weights_hash() != expected:
        raise ModelError(f"'{adapted.source}' was adapted from weights with sha256 {expected[:12]}…, but "
                         f"'{base.source}' has other weights; {fix}")
    return blend_outputs(base, adapted, float(meta["blend"]))


def _load(source: Any, scale: int | None) -> SRModel:
    if isinstance(source, nn.Module):
        return _from_module(source, scale)
    model = _load_known_scale(source, scale)
    _check_scale(model.source, model.scale, scale)
    return model


def _load_known_scale(source: Any, scale: int | None) -> SRModel:
    """Every source whose scale comes with it (files, state dicts, descriptors, names)."""
    if isinstance(source, SRModel):
        return source
    if isinstance(source, Mapping):
        return _from_state_dict(dict(source), source="state dict")
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_file():
            return _from_file(path)
        if str(source) in CHECKPOINTS:
            _check_scale(str(source), CHECKPOINTS[str(source)].scale, scale)
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


def _check_scale(source: str, actual: int, requested: int | None) -> None:
    if requested is not None and actual != requested:
        raise ModelError(
            f"{source}: the model has scale {actual} (x{actual}), but scale={requested} was requested. "
            f"Pass scale={actual} or leave scale out to use it, or load a x{requested} model instead"
        )


def _from_file(path: Path) -> SRModel:
    import spandrel

    if path.suffix.lower() not in _SUFFIXES:
        found = f"has suffix '{path.suffix}'" if path.suffix else "has no suffix"
        raise ModelError(
            f"'{path}' {found}, not a checkpoint format spandrel reads (accepted: {', '.join(_SUFFIXES)}). "
            "If it holds a PyTorch state dict saved with torch.save (as most .bin files do), rename it "
            "to .pth; if it is a safetensors file, rename it to .safetensors; otherwise load the "
            "weights yourself and pass the state dict or the nn.Module (with scale=) to load_model"
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
    name = type(module).__name__
    if scale is None:
        measured = _measure_scale(module, in_ch)
        if measured is None:
            raise ModelError(f"{name}: cannot infer the scale; pass scale=")
        scale = measured
        log.info("measured scale %d for %s", scale, name)
    else:
        # scale= also serves modules a 16x16 probe cannot run (size constraints, other
        # dtypes): then the declared scale is trusted; a probe that runs must agree with it.
        try:
            measured = _measure_scale(module, in_ch)
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "cannot measure"
            log.debug("could not measure the scale of %s (%s); trusting scale=%d", name, exc, scale)
            measured = None
        if measured is not None and measured != scale:
            raise ModelError(
                f"{name}: scale={scale} was given, but the module upscales x{measured} (measured: a "
                f"16x16 input gives {16 * measured}x{16 * measured}). Pass scale={measured} or leave "
                "scale out"
            )
    if scale < 2:
        raise ModelError(f"{name}: scale {scale}; ttasr adapts super-resolution models with scale >= 2")
    for p in module.parameters():
        p.requires_grad_(False)
    return SRModel(module=module, scale=int(scale), architecture=name,
                   in_channels=in_ch, out_channels=in_ch, source="module")


def _measure_scale(module: nn.Module, in_ch: int) -> int | None:
    """The scale from one 16x16 probe, or None when the output is not a whole multiple."""
    p = next(module.parameters(), None)
    # a private generator: loading a model must not advance the caller's global RNG
    probe = torch.rand(1, in_ch, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = forward(module, probe.to(p.device if p is not None else "cpu"))
    if out.shape[-1] % 16 or out.shape[-2] % 16:
        return None
    return out.shape[-1] // 16


def _first_conv_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3
