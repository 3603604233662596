"""Which established encoder ``E_c`` a reconstructor was pretrained with, and getting it back.

FAR's linear maps ``φ, ψ`` (eq. 11) predict the Gram descriptors of one particular ``E_c``
from ``E_i``'s. They mean nothing for another encoder, so pretraining records its ``E_c``
in the reconstructor file (:func:`encoder_record`) and finetuning rebuilds exactly that
encoder (:func:`rebuild_encoder`) or refuses with a message that says what is missing.

Encoders are named by a spec string:

* ``"sr-trunk:MODEL"``: the trunk features of the SR model ``MODEL`` (a registered name
  such as ``span-x4`` or a file), frozen. The record keeps the model's architecture, its
  source and its weights hash (:meth:`ttasr.SRModel.weights_hash`). At finetuning the
  encoder is that model's trunk, whichever model is adapted: the adapted model itself
  when it has the same weights (the paper's "SR network's own features" case), else the
  recorded model loaded again from its name or file and checked against the hash. A
  model that cannot be found, or whose weights differ, is refused: FAR against another
  network's features would push the SR model towards arbitrary statistics. Pass
  ``far=False`` to adapt without FAR instead (the controller still works).
* ``"clip-rn50"``: CLIP RN50 (the paper), ``layer`` a CLIP stage (default ``layer2``).
* ``"timm:NAME"``: a timm model, ``layer`` its feature index (default 2).

``layer`` and a local ``weights`` file are given separately (file paths may hold colons).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, InputError
from ...models.model import state_hash
from .encoders import EstablishedEncoder, SRTrunkEncoder, create_established_encoder

__all__ = ["encoder_fingerprint", "encoder_record", "parse_encoder_spec", "rebuild_encoder", "build_encoder"]

log = logging.getLogger(__name__)

_KINDS = ("sr-trunk", "clip-rn50", "timm")


def parse_encoder_spec(spec: str) -> tuple[str, str | None]:
    """``(kind, argument)`` of a spec: ``"sr-trunk:span-x4"`` -> ``("sr-trunk", "span-x4")``,
    ``"clip-rn50"`` -> ``("clip-rn50", None)``, ``"timm:resnet50"`` -> ``("timm", "resnet50")``."""
    kind, _, arg = spec.partition(":")
    if kind not in _KINDS:
        from ..._lookup import unknown_name

        raise unknown_name("established encoder", kind, _KINDS)
    if kind == "clip-rn50" and arg:
        raise InputError(f"established encoder {spec!r}: CLIP takes no argument; give the stage as layer=")
    if kind == "timm" and not arg:
        raise InputError("the timm established encoder is named 'timm:NAME', e.g. 'timm:resnet50'")
    return kind, arg or None


def _state_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's persistent tensors (names, shapes, float32 bytes)."""
    return state_hash(module)


def encoder_fingerprint(encoder: EstablishedEncoder) -> str:
    """What identifies ``encoder``'s weights: the SR model's weights hash for an SR trunk
    (stable although SPAN rebuilds fused tensors while running), else a hash of its state."""
    if isinstance(encoder, SRTrunkEncoder):
        from ...models import load_model

        return load_model(encoder._source[0]).weights_hash()
    return _state_hash(encoder)


def build_encoder(spec: str, *, layer: str | None = None, weights: str | None = None,
                  sr_model: Any = None) -> EstablishedEncoder:
    """The encoder named by ``spec``. A bare ``"sr-trunk"`` uses ``sr_model``."""
    from ...models import load_model

    kind, arg = parse_encoder_spec(spec)
    if kind == "sr-trunk":
        if arg is None and sr_model is None:
            raise InputError("the sr-trunk established encoder needs a model: 'sr-trunk:NAME_OR_PATH' "
                             "(e.g. 'sr-trunk:span-x4')")
        model = load_model(arg if arg is not None else sr_model)
        return create_established_encoder("sr-trunk", sr_model=model, layer=layer)
    if kind == "timm":
        return create_established_encoder("timm", name=arg, layer=layer, weights=weights)
    return create_established_encoder("clip-rn50", layer=layer, weights=weights)


def encoder_record(encoder: EstablishedEncoder, spec: str, *, layer: str | None = None) -> dict[str, Any]:
    """The JSON-able description of ``encoder`` saved in the reconstructor's metadata."""
    kind, arg = parse_encoder_spec(spec)
    record: dict[str, Any] = {"kind": kind, "spec": encoder.spec, "layer": layer, "channels": encoder.channels,
                              "fingerprint": encoder_fingerprint(encoder)}
    if isinstance(encoder, SRTrunkEncoder):
        from ...models import load_model

        model = load_model(encoder._source[0])
        source = arg or model.source
        if Path(source).expanduser().is_file():  # found again from any working directory
            source = str(Path(source).expanduser().resolve())
        record.update(model_source=source, model_architecture=model.architecture,
                      model_scale=model.scale, layer_name=encoder.layer_name)
    else:
        record["name"] = arg
    return record


def _describe(record: dict[str, Any]) -> str:
    if record.get("kind") == "sr-trunk":
        return (f"the trunk of the {record.get('model_architecture')} model {record.get('model_source')!r} "
                f"(weights sha256 {str(record.get('fingerprint'))[:12]}...)")
    return f"{record.get('spec')} (weights sha256 {str(record.get('fingerprint'))[:12]}...)"


def rebuild_encoder(record: dict[str, Any], *, adapted_model: Any, spec: str | None = None,
                    layer: str | None = None, weights: str | None = None, where: str = "the reconstructor") -> EstablishedEncoder:
    """The encoder ``record`` describes, for finetuning ``adapted_model``.

    ``spec``/``layer``/``weights`` are the user's choice, if any: the spec must name the
    recorded kind (and model or name), ``weights`` a local file of the recorded weights.
    Raises :class:`~ttasr.errors.CheckpointError` when the recorded encoder cannot be had.
    """
    kind = record.get("kind")
    layer = layer if layer is not None else record.get("layer")
    if spec is not None:
        want_kind, want_arg = parse_encoder_spec(spec)
        recorded_arg = record.get("model_source") if kind == "sr-trunk" else record.get("name")
        if want_kind != kind or (want_arg is not None and kind != "sr-trunk" and want_arg != recorded_arg):
            raise CheckpointError(
                f"established_encoder={spec!r} is not the encoder {where} was pretrained with "
                f"({_describe(record)}): FAR's alignment layers only fit that one. Leave established_encoder "
                "unset, pretrain a reconstructor with this encoder, or pass far=False")
    if kind == "sr-trunk":
        return _rebuild_trunk(record, adapted_model, spec, layer, weights, where)
    if kind not in _KINDS:
        raise CheckpointError(f"{where} records an unknown established encoder kind {kind!r}")
    if kind == "clip-rn50":
        enc = build_encoder("clip-rn50", layer=layer, weights=weights)
    else:
        enc = build_encoder(f"timm:{record['name']}", layer=layer, weights=weights)
    if encoder_fingerprint(enc) != record.get("fingerprint"):
        raise CheckpointError(
            f"the {enc.spec} weights found are not those {where} was pretrained with ({_describe(record)}); "
            "pass encoder_weights= with the same file, or far=False")
    return enc


def _rebuild_trunk(record: dict[str, Any], adapted_model: Any, spec: str | None, layer: str | None,
                   weights: str | None, where: str) -> EstablishedEncoder:
    from ...models import load_model

    want = record.get("fingerprint")
    model = load_model(adapted_model)
    if model.weights_hash() == want:
        return SRTrunkEncoder(model, layer=layer)  # the paper's "own features": a frozen copy
    candidates: list[tuple[str, Any]] = []
    if weights is not None:
        candidates.append((weights, weights))
    if spec is not None and parse_encoder_spec(spec)[1] is not None:
        arg = parse_encoder_spec(spec)[1]
        candidates.append((str(arg), arg))
    source = record.get("model_source")
    if source and (Path(str(source)).is_file() or _is_registered(str(source))):
        candidates.append((str(source), source))
    tried = []
    for label, src in candidates:
        try:
            other = load_model(src)
        except Exception as exc:  # noqa: BLE001 - reported below with every other try
            tried.append(f"{label}: {exc}")
            continue
        if other.weights_hash() == want:
            log.info("FAR: E_c is the trunk of %s (the model the reconstructor was pretrained with)", label)
            return SRTrunkEncoder(other, layer=layer)
        tried.append(f"{label}: other weights (sha256 {other.weights_hash()[:12]}...)")
    raise CheckpointError(
        f"FAR needs the established encoder {where} was pretrained with, {_describe(record)}; the model "
        f"being adapted ({model.architecture}, sha256 {model.weights_hash()[:12]}...) is another one"
        + (f", and {'; '.join(tried)}" if tried else ", and the recorded model cannot be loaded from here")
        + ". Pass established_encoder='sr-trunk:PATH' (or encoder_weights=PATH) with that model's file, "
          "pretrain a reconstructor with this model's trunk, or adapt without FAR (far=False)")


def _is_registered(name: str) -> bool:
    from ...models import CHECKPOINTS

    return name in CHECKPOINTS
