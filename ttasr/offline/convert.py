"""ncnn graphs to PyTorch state dicts with spandrel's key names.

Supported: ESRGAN (RRDBNet, any block count, as exported by Real-ESRGAN and RealSR),
Compact (SRVGGNetCompact) and SPAN. Each mapping checks the graph's structure (activations,
residual scales, upsampling, normalisation) against what spandrel's module computes and
refuses, with the reason, any graph spandrel cannot reproduce exactly.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from .ncnn_format import NcnnGraph, NcnnLayer, read_ncnn

__all__ = [
    "ARCHITECTURES",
    "Converted",
    "convert_graph",
    "convert_ncnn",
    "detect_architecture",
    "span_branches_from_kernel",
]

log = logging.getLogger(__name__)

ARCHITECTURES = ("ESRGAN", "Compact", "SPAN")

#: spandrel's SPAN normalises with this fixed mean and a x255 range (``SPANArch.load``).
SPAN_RGB_MEAN = (0.4488, 0.4371, 0.4040)
SPAN_IMG_RANGE = 255.0

_LRELU = 2  # ncnn fused activation id for LeakyReLU (slope in array 10)
_NEAREST = 1  # ncnn Interp resize type


@dataclass(frozen=True)
class Converted:
    """A converted state dict with the architecture and scale the graph implies."""

    state_dict: dict[str, torch.Tensor]
    architecture: str
    scale: int


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _refuse(graph: NcnnGraph, arch: str, why: str) -> CheckpointError:
    return CheckpointError(f"'{graph.param_path}' cannot be converted to spandrel's {arch}: {why}")


def _activation(layer: NcnnLayer) -> tuple[int, tuple[float, ...]]:
    return layer.int_param(9, 0), layer.array_param(10)


def _check_conv(graph: NcnnGraph, arch: str, layer: NcnnLayer, *, act: str | None, kernel: int = 3) -> None:
    """A stride-1, dilation-1, 'same'-padded conv with bias and the expected fused activation."""
    k = layer.int_param(1, 0)
    if (k, layer.int_param(11, k)) != (kernel, kernel) or layer.int_param(3, 1) != 1 or layer.int_param(2, 1) != 1:
        raise _refuse(graph, arch, f"layer '{layer.name}' is not a {kernel}x{kernel} stride-1 convolution")
    pad = kernel // 2
    # ncnn pads: 4 left, 14 top, 15 right, 16 bottom (each defaults to the one before it).
    left = layer.int_param(4, 0)
    top = layer.int_param(14, left)
    if (left, top, layer.int_param(15, left), layer.int_param(16, top)) != (pad,) * 4:
        raise _refuse(graph, arch, f"layer '{layer.name}' does not pad by {pad}")
    if "bias" not in layer.weights:
        raise _refuse(graph, arch, f"layer '{layer.name}' has no bias")
    fused, params = _activation(layer)
    if act is None and fused != 0:
        raise _refuse(graph, arch, f"layer '{layer.name}' has a fused activation ({fused}) the module does not apply")
    if act == "lrelu0.2" and (fused != _LRELU or not np.isclose(params[0], 0.2)):
        raise _refuse(graph, arch, f"layer '{layer.name}' should end in LeakyReLU(0.2), has activation {fused} {params}")


# --- ESRGAN (RRDBNet) ------------------------------------------------------------------------


def _convert_esrgan(graph: NcnnGraph) -> Converted:
    """RRDBNet: ``conv_first``, ``body.{b}.rdb{r}.conv{k}``, ``conv_body``, ``conv_up*``, ``conv_hr``, ``conv_last``.

    ESRGAN (Wang et al. 2018, Sec. 3.1): each RDB has five 3x3 convs with dense concatenation,
    LeakyReLU(0.2) after the first four and a residual scaled by 0.2; each RRDB chains three
    RDBs with another 0.2-scaled residual. Upsampling is nearest x2 followed by a conv.
    """
    arch = "ESRGAN"
    convs = graph.of_type("Convolution")
    interps = graph.of_type("Interp")
    n_up = len(interps)
    body = len(convs) - 4 - n_up
    if n_up == 0 or body <= 0 or body % 15:
        raise _refuse(graph, arch, f"{len(convs)} convolutions and {n_up} resizes do not form an RRDBNet")
    blocks = body // 15
    for interp in interps:
        if interp.int_param(0, 0) != _NEAREST or not (np.isclose(interp.float_param(1, 1.0), 2.0)
                                                      and np.isclose(interp.float_param(2, 1.0), 2.0)):
            raise _refuse(graph, arch, f"resize '{interp.name}' is not nearest x2")
    eltwise = graph.of_type("Eltwise")
    if len(eltwise) != 4 * blocks:
        raise _refuse(graph, arch, f"expected {4 * blocks} scaled residual additions, found {len(eltwise)}")
    for layer in eltwise:
        coeffs = layer.array_param(1)
        if layer.int_param(0, 0) != 1 or len(coeffs) != 2 or not np.allclose(coeffs, (0.2, 1.0)):
            raise _refuse(graph, arch, f"residual '{layer.name}' is not 0.2 * x + skip")
    allowed = {"Input", "Split", "Concat", "Convolution", "Eltwise", "BinaryOp", "Interp", "Reshape", "Permute"}
    if odd := sorted({layer.type for layer in graph} - allowed):
        raise _refuse(graph, arch, f"unexpected layer types {odd}")

    names: list[tuple[str, str | None]] = [("conv_first", None)]
    for b in range(blocks):
        for r in range(1, 4):
            for k in range(1, 6):
                names.append((f"body.{b}.rdb{r}.conv{k}", "lrelu0.2" if k < 5 else None))
    names.append(("conv_body", None))
    names += [(f"conv_up{i}", "lrelu0.2") for i in range(1, n_up + 1)]
    names += [("conv_hr", "lrelu0.2"), ("conv_last", None)]

    state: dict[str, torch.Tensor] = {}
    for (key, act), layer in zip(names, convs, strict=True):
        _check_conv(graph, arch, layer, act=act)
        state[f"{key}.weight"] = _t(layer.weights["weight"])
        state[f"{key}.bias"] = _t(layer.weights["bias"])
    in_ch = state["conv_first.weight"].shape[1]
    out_ch = state["conv_last.weight"].shape[0]
    shuffle = {out_ch: 1, out_ch * 4: 2, out_ch * 16: 4}.get(in_ch)
    if shuffle is None:
        raise _refuse(graph, arch, f"{in_ch} input channels for {out_ch} output channels")
    return Converted(state, arch, 2**n_up // shuffle)


# --- Compact (SRVGGNetCompact) ---------------------------------------------------------------


def _convert_compact(graph: NcnnGraph) -> Converted:
    """SRVGGNetCompact (the Real-ESRGAN repository's small model, not in the paper): conv/PReLU
    pairs into ``body.{i}``, a final conv to ``3 * s^2`` channels, pixel shuffle, plus the
    nearest-upsampled input."""
    arch = "Compact"
    seq = [layer for layer in graph if layer.type in ("Convolution", "PReLU")]
    if len(seq) < 3 or len(seq) % 2 == 0:
        raise _refuse(graph, arch, "the graph is not alternating Convolution and PReLU layers")
    for i, layer in enumerate(seq):
        want = "Convolution" if i % 2 == 0 else "PReLU"
        if layer.type != want:
            raise _refuse(graph, arch, f"layer {i} of the body ('{layer.name}') is {layer.type}, expected {want}")
    shuffles = graph.of_type("PixelShuffle")
    interps = graph.of_type("Interp")
    if len(shuffles) != 1 or len(interps) != 1:
        raise _refuse(graph, arch, f"expected one PixelShuffle and one nearest resize, found {len(shuffles)} and "
                      f"{len(interps)} (a graph that resizes its output, like the animevideov3 x2/x3 "
                      "exports that shrink the x4 result, is not a plain Compact network)")
    scale = shuffles[0].int_param(0, 1)
    interp = interps[0]
    if interp.int_param(0, 0) != _NEAREST or not np.isclose(interp.float_param(1, 1.0), scale):
        raise _refuse(graph, arch, f"the skip resize '{interp.name}' is not nearest x{scale}")
    output_layer = graph.producer("output") or graph.layers[-1]
    if output_layer.type != "BinaryOp" or output_layer.int_param(0, 0) != 0:
        raise _refuse(graph, arch, f"the output is made by '{output_layer.name}' ({output_layer.type}), not the skip addition")
    state: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(seq):
        if layer.type == "Convolution":
            _check_conv(graph, arch, layer, act=None)
            state[f"body.{i}.weight"] = _t(layer.weights["weight"])
            state[f"body.{i}.bias"] = _t(layer.weights["bias"])
        else:
            state[f"body.{i}.weight"] = _t(layer.weights["slope"])
    return Converted(state, arch, scale)


# --- SPAN ------------------------------------------------------------------------------------

_SPAN_CONV = re.compile(r"^/?(conv_1|conv_2|block_\d+/c\d_r)/eval_conv/Conv$")


def span_branches_from_kernel(weight: torch.Tensor, bias: torch.Tensor, gain: int = 2) -> dict[str, torch.Tensor]:
    """Training-branch weights of a SPAN ``Conv3XC`` whose re-parameterisation is ``(weight, bias)``.

    SPAN (Wan et al., CVPRW 2024) trains each 3x3 conv (``Conv3XC``) as ``1x1 -> 3x3 -> 1x1``
    plus a 1x1 skip, and re-parameterises them into one 3x3 kernel for inference. spandrel recomputes the
    fused kernel from the branches at every eval forward, so the branches must carry the
    kernel exactly: the first 1x1 embeds the input into the first ``c_in`` of ``gain*c_in``
    channels, the 3x3 holds the kernel in its top-left block, the last 1x1 selects the first
    ``c_out`` channels, and the skip is zero. Multiplying by 0 and 1 is exact in floating
    point, so the fused kernel spandrel rebuilds equals ``weight`` bit for bit.
    """
    c_out, c_in, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"Conv3XC kernels are 3x3, got {kh}x{kw}")
    w1 = torch.zeros(gain * c_in, c_in, 1, 1)
    w1[:c_in, :, 0, 0] = torch.eye(c_in)
    w2 = torch.zeros(gain * c_out, gain * c_in, 3, 3)
    w2[:c_out, :c_in] = weight
    b2 = torch.zeros(gain * c_out)
    b2[:c_out] = bias
    w3 = torch.zeros(c_out, gain * c_out, 1, 1)
    w3[:, :c_out, 0, 0] = torch.eye(c_out)
    return {
        "sk.weight": torch.zeros(c_out, c_in, 1, 1),
        "sk.bias": torch.zeros(c_out),
        "conv.0.weight": w1,
        "conv.0.bias": torch.zeros(gain * c_in),
        "conv.1.weight": w2,
        "conv.1.bias": b2,
        "conv.2.weight": w3,
        "conv.2.bias": torch.zeros(c_out),
        "eval_conv.weight": weight.clone(),
        "eval_conv.bias": bias.clone(),
    }


def _span_normalisation(graph: NcnnGraph) -> None:
    """Require ``(x - mean) * 255`` with spandrel's fixed mean; anything else is refused."""
    arch = "SPAN"
    first = graph.of_type("Convolution")[0]
    producer = graph.producer(first.inputs[0])
    mul = producer if producer is not None and producer.type == "BinaryOp" and producer.int_param(0, 0) == 2 else None
    sub_layer = graph.producer(mul.inputs[0]) if mul is not None else producer
    if sub_layer is None or sub_layer.type != "BinaryOp" or sub_layer.int_param(0, 0) != 1:
        raise _refuse(graph, arch, "the input is not normalised by subtracting a mean; spandrel's SPAN "
                      "always subtracts its fixed RGB mean (or nothing, with 'no_norm')")
    consts = [graph.producer(b) for b in sub_layer.inputs]
    mean_layer = next((c for c in consts if c is not None and c.type == "MemoryData"), None)
    if mean_layer is None:
        raise _refuse(graph, arch, f"the mean subtracted by '{sub_layer.name}' is not a constant")
    mean = mean_layer.weights["data"].reshape(-1)
    if mean.shape != (3,) or not np.allclose(mean, SPAN_RGB_MEAN, atol=1e-6, rtol=0):
        raise _refuse(graph, arch, f"it subtracts the mean {tuple(round(float(v), 4) for v in mean)}, but spandrel's SPAN "
                      f"hard-codes {SPAN_RGB_MEAN}")
    scale = mul.float_param(2, 1.0) if mul is not None and mul.int_param(1, 0) == 1 else None
    if scale is None or not np.isclose(scale, SPAN_IMG_RANGE):
        got = "no scaling" if scale is None else f"x{scale:g}"
        raise _refuse(graph, arch, f"it normalises the input with {got} after the mean, but spandrel's SPAN "
                      f"hard-codes img_range={SPAN_IMG_RANGE:g} (the zero padding of the first convolution "
                      "makes a different normalisation impossible to fold into its weights exactly)")


def _convert_span(graph: NcnnGraph) -> Converted:
    """SPAN: ncnn layer names ``/conv_1/eval_conv/Conv`` etc. map to spandrel's modules."""
    arch = "SPAN"
    _span_normalisation(graph)
    state: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    for layer in graph.of_type("Convolution"):
        name = layer.name
        if m := _SPAN_CONV.match(name):
            module = m.group(1).replace("/", ".")
            _check_conv(graph, arch, layer, act=None)
            for k, v in span_branches_from_kernel(_t(layer.weights["weight"]), _t(layer.weights["bias"])).items():
                state[f"{module}.{k}"] = v
        elif name.strip("/") == "conv_cat/Conv":
            module = "conv_cat"
            _check_conv(graph, arch, layer, act=None, kernel=1)
            state["conv_cat.weight"] = _t(layer.weights["weight"])
            state["conv_cat.bias"] = _t(layer.weights["bias"])
        elif name.strip("/") == "upsampler/upsampler.0/Conv":
            module = "upsampler.0"
            _check_conv(graph, arch, layer, act=None)
            state["upsampler.0.weight"] = _t(layer.weights["weight"])
            state["upsampler.0.bias"] = _t(layer.weights["bias"])
        else:
            raise _refuse(graph, arch, f"convolution '{name}' has no counterpart in spandrel's SPAN")
        seen.add(module)
    expected = {"conv_1", "conv_2", "conv_cat", "upsampler.0"} | {
        f"block_{b}.c{c}_r" for b in range(1, 7) for c in range(1, 4)}
    if seen != expected:
        raise _refuse(graph, arch, f"missing {sorted(expected - seen)}, extra {sorted(seen - expected)}")
    if len(graph.of_type("Swish")) != 12 or len(graph.of_type("Sigmoid")) != 6:
        raise _refuse(graph, arch, "expected 12 SiLU and 6 sigmoid attention layers (six SPAB blocks)")
    shuffles = graph.of_type("PixelShuffle")
    if len(shuffles) != 1:
        raise _refuse(graph, arch, "expected exactly one PixelShuffle")
    scale = shuffles[0].int_param(0, 1)
    return Converted(state, arch, scale)


# --- entry points ----------------------------------------------------------------------------


def detect_architecture(graph: NcnnGraph) -> str:
    """Guess the architecture of an ncnn SR graph from its layer names and structure."""
    if any("eval_conv" in layer.name for layer in graph):
        return "SPAN"
    types = [layer.type for layer in graph]
    if "PReLU" in types and types.count("Convolution") == types.count("PReLU") + 1:
        return "Compact"
    if "Eltwise" in types and "Concat" in types and types.count("Convolution") >= 20:
        return "ESRGAN"
    raise CheckpointError(
        f"cannot tell which architecture '{graph.param_path}' is (supported: {', '.join(ARCHITECTURES)}); "
        "pass architecture= if you know it"
    )


_CONVERTERS = {"ESRGAN": _convert_esrgan, "Compact": _convert_compact, "SPAN": _convert_span}


def convert_graph(graph: NcnnGraph, architecture: str | None = None) -> Converted:
    """Convert a parsed ncnn graph; ``architecture`` is detected when not given."""
    arch = architecture or detect_architecture(graph)
    try:
        convert = _CONVERTERS[arch]
    except KeyError:
        raise CheckpointError(
            f"no ncnn mapping for architecture '{arch}'; supported: {', '.join(ARCHITECTURES)}"
        ) from None
    out = convert(graph)
    log.debug("converted %s as %s x%d (%d tensors)", graph.param_path, out.architecture, out.scale, len(out.state_dict))
    return out


def convert_ncnn(
    param_path: str | Path, bin_path: str | Path, architecture: str | None = None
) -> dict[str, torch.Tensor]:
    """Read an ncnn ``.param``/``.bin`` pair and return a state dict with spandrel's key names."""
    return convert_graph(read_ncnn(param_path, bin_path), architecture).state_dict
