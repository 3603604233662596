"""load_model's checks at the boundary: the requested scale and the file suffixes spandrel reads."""

from __future__ import annotations

import pytest
import spandrel
import torch
from safetensors.torch import save_file
from torch import nn

import ttasr
from ttasr._fs import cache_dir
from ttasr.errors import ModelError
from ttasr.models import loader, registry


def _scale_error(scale: int, requested: int) -> str:
    # both scales must be named: the model's and the one asked for
    return rf"scale {scale}\b.*scale={requested}\b"


def test_scale_mismatch_is_refused_for_files_state_dicts_descriptors_and_models(tiny_compact, tmp_path):
    """Defect 9: scale=4 was silently ignored for an x2 model."""
    state = tiny_compact.model.state_dict()
    torch.save(state, tmp_path / "c.pth")
    save_file(state, str(tmp_path / "c.safetensors"))
    for source in (tmp_path / "c.pth", str(tmp_path / "c.safetensors"), state, tiny_compact,
                   ttasr.load_model(tiny_compact)):
        with pytest.raises(ModelError, match=_scale_error(2, 4)):
            ttasr.load_model(source, scale=4)
        assert ttasr.load_model(source, scale=2).scale == 2
    with pytest.raises(ModelError, match=str(tmp_path / "c.pth")):
        ttasr.load_model(tmp_path / "c.pth", scale=4)


def test_scale_mismatch_for_a_name_is_refused_before_resolving(monkeypatch):
    spec = registry.CheckpointSpec("test-x2", "SPAN", 2, "test", "MIT")
    monkeypatch.setitem(registry.CHECKPOINTS, "test-x2", spec)

    def no_resolution(name, **kwargs):
        raise AssertionError("the registered scale already tells the request cannot be met")

    monkeypatch.setattr(loader, "resolve_checkpoint", no_resolution)
    with pytest.raises(ModelError, match=r"test-x2.*" + _scale_error(2, 4)):
        ttasr.load_model("test-x2", scale=4)


def test_scale_of_a_named_file_is_checked_after_loading(tiny_span, monkeypatch):
    """A cached file whose real scale differs from the request is refused too."""
    spec = registry.CheckpointSpec("labelled-x4", "SPAN", 4, "test", "MIT")  # the file is x2
    monkeypatch.setitem(registry.CHECKPOINTS, "labelled-x4", spec)
    save_file(tiny_span.model.state_dict(), str(cache_dir("checkpoints") / "labelled-x4.safetensors"))
    with pytest.raises(ModelError, match=r"labelled-x4.*" + _scale_error(2, 4)):
        ttasr.load_model("labelled-x4", scale=4)
    assert ttasr.load_model("labelled-x4").scale == 2


def test_plain_module_declared_scale_must_match_the_measured_one():
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    with pytest.raises(ModelError, match=r"scale=4.*x2"):
        ttasr.load_model(net, scale=4)
    assert ttasr.load_model(net, scale=2).scale == 2
    assert ttasr.load_model(net).scale == 2


def test_plain_module_that_a_probe_cannot_run_keeps_its_declared_scale():
    class NeedsLargeInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 27, 3, padding=1), nn.PixelShuffle(3))

        def forward(self, x):
            if x.shape[-1] < 64:
                raise RuntimeError("input must be at least 64 pixels wide")
            return self.body(x)

    assert ttasr.load_model(NeedsLargeInput(), scale=3).scale == 3
    with pytest.raises(RuntimeError, match="64 pixels"):  # nothing to trust without scale=
        ttasr.load_model(NeedsLargeInput())


def test_measuring_a_module_leaves_the_global_rng_alone():
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ttasr.load_model(net)
    ttasr.load_model(net, scale=2)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".onnx", ".pkl", ".npz", ".h5", ""])
def test_accepted_suffixes_are_exactly_spandrels(tmp_path, suffix):
    """Defect 15: the loader accepted .bin, which spandrel then refused."""
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(b"not a checkpoint")
    try:
        spandrel.ModelLoader().load_state_dict_from_file(path)
        spandrel_reads = True
    except ValueError as exc:
        spandrel_reads = "Unsupported model file extension" not in str(exc)
    except Exception:  # noqa: BLE001 - a read error: the suffix itself was accepted
        spandrel_reads = True
    assert (suffix in loader._SUFFIXES) == spandrel_reads


def test_unsupported_suffix_names_the_file_the_suffixes_and_the_fix(tiny_compact, tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save(tiny_compact.model.state_dict(), path)
    with pytest.raises(ModelError, match="not a checkpoint format") as info:
        ttasr.load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "'.bin'" in msg
    assert ".safetensors, .pth, .pt, .ckpt" in msg and "rename it to .pth" in msg
    renamed = path.rename(path.with_suffix(".pth"))  # the fix the message gives works
    assert ttasr.load_model(renamed).scale == 2
    no_suffix = tmp_path / "weights"
    no_suffix.write_bytes(b"x")
    with pytest.raises(ModelError, match="has no suffix"):
        ttasr.load_model(no_suffix)
