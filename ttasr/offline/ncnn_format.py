"""Reader for ncnn models: the ``.param`` text graph and the ``.bin`` weight blob.

Format (ncnn's own ``Net::load_param`` / ``ModelBinFromDataReader``):

* ``.param``: line 1 is the magic ``7767517``, line 2 ``<layer count> <blob count>``, then
  one layer a line ``Type name n_in n_out in... out... k=v ...``. A key ``<= -23300`` holds
  an array with id ``-k - 23300`` whose value is ``count,v1,v2,...``.
* ``.bin``: the layers' weights, concatenated in ``.param`` order. A weight *with a tag*
  (Convolution/Deconvolution/InnerProduct kernels) starts with a 4-byte little-endian tag:
  ``0x01306B47`` fp16 (data padded to 4 bytes), ``0`` fp32, ``0x000D4B38`` int8 (padded to
  4 bytes), ``0x0002C056`` fp32. Everything else (bias, PReLU slopes, BatchNorm/Scale,
  MemoryData) is raw fp32 with no tag.

The reader returns weights in PyTorch's layouts (Deconvolution swapped to
``[in][out][kh][kw]``) as float32 numpy arrays, and insists that the ``.bin`` is consumed
exactly: a file that is too short or too long means the graph was not understood.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

__all__ = ["WEIGHTLESS_LAYERS", "NcnnGraph", "NcnnLayer", "read_ncnn", "read_param"]

log = logging.getLogger(__name__)

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32 = 0x00000000
TAG_FP32_SCALED = 0x0002C056

#: Layer types that take no bytes from the ``.bin`` (whatever their parameters say).
WEIGHTLESS_LAYERS = frozenset({
    "Input", "Split", "Concat", "Slice", "BinaryOp", "UnaryOp", "Eltwise", "ReLU", "Sigmoid",
    "Swish", "TanH", "Clip", "HardSigmoid", "HardSwish", "Mish", "GELU", "ELU", "SELU",
    "PixelShuffle", "Reorg", "Interp", "Padding", "Crop", "Reshape", "Permute", "Flatten",
    "Pooling", "Softmax", "Noop", "Dropout", "Exp", "Log", "Power", "Threshold", "AbsVal",
    "ShuffleChannel", "Squeeze", "ExpandDims", "Reduction", "Flip", "Tile", "CopyTo",
})

ParamValue = int | float | tuple[int | float, ...]


@dataclass
class NcnnLayer:
    """One layer of an ncnn graph with its parameters and (PyTorch-layout) weights."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    storage: str | None = None
    """How the tagged weight was stored in the ``.bin``: ``fp16``, ``fp32`` or ``int8``."""

    def param(self, key: int, default: ParamValue = 0) -> ParamValue:
        return self.params.get(key, default)

    def int_param(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        if not isinstance(value, int):
            raise CheckpointError(f"layer '{self.name}' ({self.type}): parameter {key} should be an integer, is {value!r}")
        return value

    def float_param(self, key: int, default: float = 0.0) -> float:
        value = self.params.get(key, default)
        if isinstance(value, tuple):
            raise CheckpointError(f"layer '{self.name}' ({self.type}): parameter {key} should be a number, is {value!r}")
        return float(value)

    def array_param(self, key: int) -> tuple[float, ...]:
        """An array parameter (or a single number) as floats; empty when absent."""
        value = self.params.get(key, ())
        return tuple(float(v) for v in value) if isinstance(value, tuple) else (float(value),)


@dataclass
class NcnnGraph:
    """A parsed ncnn model: layers in file order plus where they came from."""

    layers: list[NcnnLayer]
    param_path: Path
    bin_path: Path | None = None

    def of_type(self, *types: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type in types]

    def producer(self, blob: str) -> NcnnLayer | None:
        for layer in self.layers:
            if blob in layer.outputs:
                return layer
        return None

    def consumers(self, blob: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if blob in layer.inputs]

    def __iter__(self) -> Iterator[NcnnLayer]:
        return iter(self.layers)


def _number(text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise CheckpointError(f"{where}: '{text}' is not a number") from None


def read_param(path: str | Path) -> list[NcnnLayer]:
    """Parse an ncnn ``.param`` file into layers (weights still empty)."""
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise CheckpointError(f"cannot read ncnn graph '{path}': {exc}") from exc
    lines = [ln for ln in lines if ln]
    if not lines or lines[0] != str(MAGIC):
        raise CheckpointError(
            f"'{path}' is not an ncnn .param text file (first line is not the magic {MAGIC}); "
            "binary .param.bin files are not supported"
        )
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise CheckpointError(f"'{path}' line 2 must be '<layer count> <blob count>'") from None
    layers: list[NcnnLayer] = []
    for lineno, line in enumerate(lines[2:], start=3):
        tok = line.split()
        where = f"{path}:{lineno}"
        if len(tok) < 4:
            raise CheckpointError(f"{where}: layer line has fewer than 4 fields: '{line}'")
        ltype, name = tok[0], tok[1]
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
        except ValueError:
            raise CheckpointError(f"{where}: layer '{name}' has non-integer blob counts") from None
        blobs = tok[4:4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise CheckpointError(f"{where}: layer '{name}' lists fewer blobs than {n_in}+{n_out}")
        params: dict[int, ParamValue] = {}
        for kv in tok[4 + n_in + n_out:]:
            key_text, sep, value = kv.partition("=")
            if not sep:
                raise CheckpointError(f"{where}: layer '{name}' parameter '{kv}' is not key=value")
            key = int(key_text)
            if key <= -23300:
                count_text, *items = value.split(",")
                count = int(count_text)
                if len(items) != count:
                    raise CheckpointError(f"{where}: layer '{name}' array {key} says {count} items, has {len(items)}")
                params[-key - 23300] = tuple(_number(v, where) for v in items)
            else:
                params[key] = _number(value, where)
        layers.append(NcnnLayer(ltype, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params))
    if len(layers) != layer_count:
        raise CheckpointError(f"'{path}' declares {layer_count} layers but lists {len(layers)}")
    return layers


class _BinCursor:
    """Sequential reader over the ``.bin`` bytes that names the layer on any failure."""

    def __init__(self, data: bytes, path: Path, param_path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path
        self.param_path = param_path

    def _take(self, nbytes: int, layer: NcnnLayer, what: str) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise CheckpointError(
                f"'{self.path}' ends at byte {len(self.data)} but layer '{layer.name}' ({layer.type}) "
                f"needs {nbytes} bytes for its {what} from byte {self.pos}: the .bin is truncated "
                "or does not belong to this .param"
            )
        chunk = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def raw(self, count: int, layer: NcnnLayer, what: str) -> np.ndarray:
        """``count`` untagged float32 values."""
        return np.frombuffer(self._take(4 * count, layer, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, layer: NcnnLayer, what: str) -> tuple[np.ndarray, str]:
        """``count`` values behind a 4-byte storage tag; int8 is returned as int8."""
        tag = int(np.frombuffer(self._take(4, layer, f"{what} tag"), dtype="<u4")[0])
        if tag == TAG_FP16:
            nbytes = 2 * count
            chunk = self._take(nbytes + (-nbytes) % 4, layer, what)
            return np.frombuffer(chunk[:nbytes], dtype="<f2").astype(np.float32), "fp16"
        if tag == TAG_INT8:
            chunk = self._take(count + (-count) % 4, layer, what)
            return np.frombuffer(chunk[:count], dtype=np.int8).copy(), "int8"
        if tag in (TAG_FP32, TAG_FP32_SCALED):
            return np.frombuffer(self._take(4 * count, layer, what), dtype="<f4").astype(np.float32), "fp32"
        raise CheckpointError(
            f"'{self.path}' layer '{layer.name}' ({layer.type}): weight tag 0x{tag:08X} at byte "
            f"{self.pos - 4} is not one this reader understands (fp16 0x{TAG_FP16:08X}, fp32 0, "
            f"int8 0x{TAG_INT8:08X}); table-quantised weights are not supported"
        )


def _int(layer: NcnnLayer, key: int, default: int, where: Path) -> int:
    value = layer.params.get(key, default)
    if not isinstance(value, int):
        raise CheckpointError(f"'{where}' layer '{layer.name}': parameter {key} should be an integer, is {value!r}")
    return value


def _dequantize(weight: np.ndarray, scales: np.ndarray, groups: int) -> np.ndarray:
    """int8 weights back to float: ``w = q / scale`` with one scale per output group."""
    per = weight.reshape(groups, -1).astype(np.float32)
    return (per / scales.reshape(groups, 1)).reshape(-1)


def _load_conv_like(layer: NcnnLayer, cur: _BinCursor, depthwise: bool) -> None:
    """Convolution / ConvolutionDepthWise / Deconvolution / InnerProduct weights."""
    path = cur.path
    if layer.type == "InnerProduct":
        out, bias_term, size = _int(layer, 0, 0, path), _int(layer, 1, 0, path), _int(layer, 2, 0, path)
        kh = kw = 1
        groups = 1
    else:
        if _int(layer, 19, 0, path):  # dynamic weight: the kernel is an input blob
            return
        out = _int(layer, 0, 0, path)
        kw = _int(layer, 1, 0, path)
        kh = _int(layer, 11, kw, path)
        bias_term, size = _int(layer, 5, 0, path), _int(layer, 6, 0, path)
        groups = _int(layer, 7, 1, path) if depthwise else 1
    if out <= 0 or size <= 0 or size % (out * kh * kw):
        raise CheckpointError(
            f"'{path}' layer '{layer.name}' ({layer.type}): weight count {size} does not fit "
            f"{out} outputs of {kh}x{kw}"
        )
    weight, storage = cur.tagged(size, layer, "weight")
    layer.storage = storage
    bias = cur.raw(out, layer, "bias") if bias_term else None
    int8_term = _int(layer, 8, 0, path)
    if int8_term:
        if depthwise:
            if int8_term in (1, 101):
                w_scales = cur.raw(groups, layer, "int8 weight scales")
            elif int8_term in (2, 102):
                w_scales = np.repeat(cur.raw(1, layer, "int8 weight scale"), groups)
            else:
                raise CheckpointError(f"'{path}' layer '{layer.name}': int8_scale_term {int8_term} is not understood")
            cur.raw(1, layer, "int8 input scale")
            scale_groups = groups
        else:
            w_scales = cur.raw(out, layer, "int8 weight scales")
            cur.raw(1, layer, "int8 input scale")
            scale_groups = out
        if int8_term > 100:
            cur.raw(1, layer, "int8 output scale")
        if storage == "int8":
            weight = _dequantize(weight, w_scales, scale_groups)
    elif storage == "int8":
        raise CheckpointError(
            f"'{path}' layer '{layer.name}' ({layer.type}) stores int8 weights without scales "
            "(parameter 8 is 0), so they cannot be turned back into floats"
        )
    weight = weight.astype(np.float32)
    per_out = size // (out * kh * kw)
    if layer.type == "InnerProduct":
        weight = weight.reshape(out, per_out)
    elif layer.type == "Deconvolution":
        weight = weight.reshape(out, per_out, kh, kw).transpose(1, 0, 2, 3).copy()
    else:
        weight = weight.reshape(out, per_out, kh, kw)
    layer.weights["weight"] = weight
    if bias is not None:
        layer.weights["bias"] = bias


def _load_layer(layer: NcnnLayer, cur: _BinCursor) -> None:
    path = cur.path
    t = layer.type
    if t in ("Convolution", "Deconvolution", "InnerProduct"):
        _load_conv_like(layer, cur, depthwise=False)
    elif t == "ConvolutionDepthWise":
        _load_conv_like(layer, cur, depthwise=True)
    elif t == "PReLU":
        layer.weights["slope"] = cur.raw(_int(layer, 0, 0, path), layer, "slopes")
    elif t == "BatchNorm":
        c = _int(layer, 0, 0, path)
        for key in ("slope", "mean", "var", "bias"):
            layer.weights[key] = cur.raw(c, layer, key)
    elif t == "Scale":
        n = _int(layer, 0, 0, path)
        if n != -233:  # -233: the scale is a second input blob
            layer.weights["scale"] = cur.raw(n, layer, "scale")
            if _int(layer, 1, 0, path):
                layer.weights["bias"] = cur.raw(n, layer, "bias")
    elif t == "MemoryData":
        w, h, d, c = (_int(layer, k, 0, path) for k in (0, 1, 11, 2))
        shape = tuple(v for v in (c, d, h, w) if v) or (1,)
        count = int(np.prod(shape))
        if _int(layer, 21, 1, path) == 0:
            data, layer.storage = cur.tagged(count, layer, "data")
        else:
            data = cur.raw(count, layer, "data")
        layer.weights["data"] = data.astype(np.float32).reshape(shape)
    elif t in WEIGHTLESS_LAYERS:
        pass
    else:
        raise CheckpointError(
            f"'{cur.param_path}': layer '{layer.name}' has type '{t}', which this ncnn reader does "
            f"not understand (it cannot tell how many bytes of '{path.name}' it takes)"
        )


def read_ncnn(param_path: str | Path, bin_path: str | Path) -> NcnnGraph:
    """Read an ncnn model; weights come back as float32 numpy arrays in PyTorch layout.

    Raises :class:`~ttasr.errors.CheckpointError` naming the file and layer when a layer type
    or weight tag is not understood, or when the ``.bin`` is not consumed exactly.
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = read_param(param_path)
    try:
        data = bin_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read ncnn weights '{bin_path}': {exc}") from exc
    cur = _BinCursor(data, bin_path, param_path)
    for layer in layers:
        _load_layer(layer, cur)
    if cur.pos != len(data):
        raise CheckpointError(
            f"'{bin_path}' has {len(data) - cur.pos} bytes left after the last layer of "
            f"'{param_path}' (read {cur.pos} of {len(data)}): the files do not match or a "
            "layer's weights were misread"
        )
    log.debug("read %d layers, %d weight bytes from %s", len(layers), len(data), bin_path)
    return NcnnGraph(layers, param_path, bin_path)
