"""load_model, the spandrel traps, saving and loading back."""

from __future__ import annotations

import pytest
import spandrel
import torch
from torch import nn

import ttasr
from ttasr.errors import CheckpointError, ModelError
from ttasr.models import forward
from ttasr.models.saving import save_model


def test_load_from_descriptor_state_dict_and_files(tiny_compact, tmp_path, photo):
    m = ttasr.load_model(tiny_compact)
    assert (m.architecture, m.scale, m.in_channels, m.out_channels) == ("RealESRGAN Compact", 2, 3, 3)
    assert m.spandrel_compatible and m.tiling == "supported"
    ref = m(photo)
    assert ref.shape == (1, 3, 192, 192)
    torch.save(tiny_compact.model.state_dict(), tmp_path / "c.pth")
    from safetensors.torch import save_file

    save_file(tiny_compact.model.state_dict(), str(tmp_path / "c.safetensors"))
    for src in (tiny_compact.model.state_dict(), tmp_path / "c.pth", str(tmp_path / "c.safetensors")):
        assert torch.equal(ttasr.load_model(src)(photo), ref)


def test_swinir_reports_size_requirements(tiny_swinir):
    m = ttasr.load_model(tiny_swinir)
    assert m.architecture == "SwinIR" and m.size_requirements.minimum == 16 and m.tiling == "discouraged"
    assert m.size_requirements.padding(10, 17) == (6, 0)


def test_plain_module_scale_is_measured_or_given():
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    m = ttasr.load_model(net)
    assert m.scale == 2 and not m.spandrel_compatible
    assert ttasr.load_model(net, scale=2).scale == 2
    with pytest.raises(ModelError, match="scale 1"):
        ttasr.load_model(nn.Conv2d(3, 3, 3, padding=1))


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ttasr.load_model(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="Did you mean span-x4"):
        ttasr.load_model("span-x5")
    bad = tmp_path / "weights.txt"
    bad.write_text("hello")
    with pytest.raises(ModelError, match="not a checkpoint format"):
        ttasr.load_model(bad)
    with pytest.raises(ModelError, match="does not recognise"):
        ttasr.load_model({"foo.weight": torch.zeros(3, 3)})
    garbage = tmp_path / "broken.pth"
    garbage.write_bytes(b"\x00not a pickle")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        ttasr.load_model(garbage)
    with pytest.raises(ModelError, match="cannot load a model from a int"):
        ttasr.load_model(3)


def test_non_sr_spandrel_model_is_refused():
    from spandrel.architectures.Compact import Compact

    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=1)  # a 1x restoration model
    desc = spandrel.ModelLoader().load_from_state_dict(net.state_dict())
    with pytest.raises(ModelError, match="scale >= 2"):
        ttasr.load_model(desc)


def _one_step_changes_weights(module: nn.Module, x: torch.Tensor) -> bool:
    before = {k: v.clone() for k, v in module.state_dict().items()}
    opt = torch.optim.SGD([p for p in module.parameters()], lr=0.1)
    forward(module, x).mean().backward()
    opt.step()
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_trap_inference_mode_model_still_trains(tiny_span, photo):
    """A model that went through spandrel's inference-mode call can still be adapted."""
    tiny_span(photo[..., :32, :32])  # spandrel's path: inference tensors inside SPAN now
    assert any(p.is_inference() for p in tiny_span.model.parameters())
    m = ttasr.load_model(tiny_span)
    student = m.trainable_copy()
    assert not any(p.is_inference() for p in student.parameters())
    assert _one_step_changes_weights(student, photo[..., :32, :32])


def test_trap_span_gradients_reach_real_weights(tiny_span, photo):
    """SPAN's eval path copies weights via .data; adaptation mode must train the branches."""
    m = ttasr.load_model(tiny_span)
    student = m.trainable_copy()
    x = photo[..., :24, :24]
    out = forward(student, x)
    torch.testing.assert_close(out, m(x), atol=1e-5, rtol=1e-5)  # same function as inference
    out.mean().backward()
    branch = student.block_1.c1_r.conv[1].weight
    assert branch.grad is not None and branch.grad.abs().sum() > 0


def test_trap_drop_path_is_off_during_adaptation(tiny_swinir, photo):
    m = ttasr.load_model(tiny_swinir)
    student = m.trainable_copy()
    x = photo[..., :16, :16]
    a, b = forward(student, x), forward(student, x)
    assert torch.equal(a, b), "drop-path must be off while adapting"
    torch.testing.assert_close(a.detach(), m(x))
    student.train()  # the trap itself: train() makes the output stochastic
    assert not torch.equal(forward(student, x), forward(student, x))


def test_trap_tuple_outputs_are_unwrapped(photo):
    class TupleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))

        def forward(self, x):
            return self.body(x), {"aux": 1}

    m = ttasr.load_model(TupleNet())
    assert m.scale == 2 and m(photo).shape == (1, 3, 192, 192)


def test_save_then_spandrel_loads_same_architecture_and_outputs(tiny_span, tmp_path, photo):
    m = ttasr.load_model(tiny_span)
    path = save_model(m, tmp_path / "out.safetensors", {"ttasr_method": "none"})
    desc = spandrel.ModelLoader().load_from_file(path)
    assert desc.architecture.name == "SPAN" and desc.scale == 2
    torch.testing.assert_close(desc(photo), m(photo).clamp(0, 1), atol=1e-6, rtol=0)
    assert ttasr.load_model(path).metadata["ttasr_method"] == "none"


def test_dtype_support_is_checked(tiny_compact):
    m = ttasr.load_model(tiny_compact)
    assert m.supports(torch.float16) == tiny_compact.supports_half
    with pytest.raises(ModelError):
        m.to(dtype=torch.int8)
