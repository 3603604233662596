"""StyleGAN2 modulated convolution (ttasr.methods.hraware.modulated): the grouped-conv
trick equals a per-sample loop, demodulation gives unit-norm filters, and the module's
style path behaves as documented."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ttasr.errors import InputError
from ttasr.methods.hraware.modulated import (
    ModulatedConv2d,
    demodulate_weight,
    modulate_weight,
    modulated_conv2d,
)


def _loop_reference(x, weight, style, demodulate, eps=1e-8):
    """One conv2d per sample with its explicitly built modulated (demodulated) weight."""
    _, in_ch, k, _ = weight.shape
    gain = 1.0 / math.sqrt(in_ch * k * k)
    outs = []
    for b in range(x.shape[0]):
        w = gain * weight * style[b].reshape(1, in_ch, 1, 1)
        if demodulate:
            norm = torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + eps)
            w = w / norm
        outs.append(F.conv2d(x[b : b + 1], w, padding=k // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_grouped_conv_equals_per_sample_loop(demodulate, k):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 11, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 4, k, k, generator=g, dtype=torch.float64)
    style = torch.randn(3, 4, generator=g, dtype=torch.float64)
    got = modulated_conv2d(x, weight, style, demodulate=demodulate)
    assert got.shape == (3, 5, 9, 11)
    torch.testing.assert_close(got, _loop_reference(x, weight, style, demodulate), atol=1e-5, rtol=0)


def test_module_equals_loop_with_its_effective_weight():
    conv = ModulatedConv2d(4, 6, 3, style_dim=7)
    with torch.no_grad():
        conv.bias.normal_()
    x, e = torch.randn(2, 4, 8, 8), torch.randn(2, 7)
    got = conv(x, e)
    w = conv.effective_weight(e)
    ref = torch.cat([F.conv2d(x[b : b + 1], w[b], conv.bias, padding=1) for b in range(2)])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(got - conv.bias[None, :, None, None],
                               _loop_reference(x, conv.weight, conv.affine(e), True), atol=1e-5, rtol=0)


def test_demodulation_gives_unit_norm_filters():
    conv = ModulatedConv2d(5, 3, 3, style_dim=4)
    w = conv.effective_weight(torch.randn(6, 4) * 10)
    norms = w.square().sum(dim=(2, 3, 4)).sqrt()
    assert norms.shape == (6, 3)
    torch.testing.assert_close(norms, torch.ones(6, 3), atol=1e-5, rtol=0)
    # without demodulation the norm follows the style
    plain = ModulatedConv2d(5, 3, 3, style_dim=4, demodulate=False)
    assert not torch.allclose(plain.effective_weight(torch.randn(6, 4) * 10).square().sum(dim=(2, 3, 4)),
                              torch.ones(6, 3))


def test_demodulated_output_ignores_the_style_scale():
    x, weight, style = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.rand(2, 3) + 0.5
    a = modulated_conv2d(x, weight, style)
    b = modulated_conv2d(x, weight, 7.5 * style)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    c = modulated_conv2d(x, weight, 7.5 * style, demodulate=False)
    torch.testing.assert_close(c, 7.5 * modulated_conv2d(x, weight, style, demodulate=False))


def test_modulate_and_demodulate_formulas():
    weight, style = torch.randn(2, 3, 1, 1), torch.tensor([[1.0, 2.0, 3.0]])
    m = modulate_weight(weight, style, gain=0.5)
    torch.testing.assert_close(m[0, :, :, 0, 0], 0.5 * weight[:, :, 0, 0] * style)
    d = demodulate_weight(m, eps=0.0)
    torch.testing.assert_close(d[0, :, :, 0, 0], m[0, :, :, 0, 0] / m[0, :, :, 0, 0].norm(dim=1, keepdim=True))


def test_untrained_styles_start_near_one_and_gradients_reach_the_affine():
    conv = ModulatedConv2d(3, 3, 3, style_dim=4)
    torch.testing.assert_close(conv.style(torch.zeros(2, 4)), torch.ones(2, 3))
    e = torch.randn(2, 4, requires_grad=True)
    conv(torch.randn(2, 3, 5, 5), e).square().sum().backward()
    assert conv.affine.weight.grad is not None and conv.affine.weight.grad.abs().sum() > 0
    assert e.grad is not None and conv.weight.grad is not None


def test_shape_errors():
    with pytest.raises(InputError, match="odd kernel"):
        ModulatedConv2d(3, 3, 2, style_dim=4)
    conv = ModulatedConv2d(3, 3, 3, style_dim=4)
    with pytest.raises(InputError, match="B x 4 embedding"):
        conv(torch.randn(2, 3, 5, 5), torch.randn(2, 5))
    with pytest.raises(InputError, match="do not agree"):
        modulated_conv2d(torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3), torch.randn(3, 3))
