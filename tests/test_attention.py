"""Attention maps for AdaSSR: block location, eqs. 12-14 against a dense reference, our
feature-attention extension, weights, heat maps and the cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttasr.errors import InputError, ModelError
from ttasr.methods.adassr.attention import (
    attention_weights,
    column_attention_map,
    feature_attention_map,
    find_attention_block,
    locate_attention,
    transformer_attention_map,
)
from ttasr.methods.adassr.attention_cache import AttentionCache
from ttasr.methods.adassr.heatmap import save_heatmap
from ttasr.models import load_model
from ttasr.models.features import capture_trunk_features


def _load(net: torch.nn.Module):
    import spandrel

    return load_model(spandrel.ModelLoader().load_from_state_dict(net.state_dict()))


def _sharpen_qk(model, factor: float = 25.0):
    """Random init gives near-uniform attention; larger q/k weights give a structured map."""
    with torch.no_grad():
        for m in model.module.modules():
            qkv = getattr(m, "qkv", None)
            if isinstance(qkv, torch.nn.Linear):
                qkv.weight[: 2 * qkv.in_features] *= factor
    return model


def _swinir():
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(3)
    return SwinIR(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, mlp_ratio=1.0,
                  upscale=2, upsampler="pixelshuffledirect")


def _swin2sr():
    from spandrel.architectures.Swin2SR import Swin2SR

    torch.manual_seed(4)
    return Swin2SR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=1.0,
                   upscale=2, upsampler="pixelshuffledirect")


def _hat():
    from spandrel.architectures.HAT import HAT

    torch.manual_seed(5)
    return HAT(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=1.0, upscale=2,
               num_feat=8, squeeze_factor=4, compress_ratio=3)


def _dat():
    from spandrel.architectures.DAT import DAT

    torch.manual_seed(6)
    return DAT(img_size=64, embed_dim=32, depth=[2, 2], num_heads=[2, 2], split_size=[2, 4],
               expansion_factor=1.0, upscale=2, upsampler="pixelshuffledirect")


@pytest.fixture
def image() -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[150:182, 200:232]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


# --------------------------------------------------------------------------- the maths
def _dense_columns(q, k, scale):
    a = torch.softmax(q @ k.transpose(1, 2) * torch.as_tensor(scale).reshape(-1, 1, 1), dim=-1)
    return a.sum(1).mean(0)


def test_column_map_chunked_equals_dense_and_averages_to_one():
    torch.manual_seed(0)
    q, k = torch.randn(3, 50, 8), torch.randn(3, 50, 8)
    scale = torch.tensor([0.3, 0.5, 1.0])
    out = column_attention_map(q, k, scale, chunk_size=7)
    assert torch.allclose(out, _dense_columns(q, k, scale), atol=1e-5)
    assert float(out.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(out.std()) > 0.1


def test_hub_token_gets_the_highest_score():
    """A token similar to every other one (the normalised mean) is attended by all."""
    torch.manual_seed(1)
    g = F.normalize(torch.randn(40, 16), dim=-1)
    g = torch.cat([g, F.normalize(g.mean(0, keepdim=True), dim=-1)])
    out = column_attention_map(g[None], g[None], 5.0)
    assert int(out.argmax()) == 40
    assert float(out[40]) > float(out[:40].max()) + 0.05


# --------------------------------------------------------------------------- locating blocks
def test_locates_the_documented_blocks():
    for build, path, cosine in [
        (_swinir, "layers.1.residual_group.blocks.1.attn", False),
        (_swin2sr, "layers.0.residual_group.blocks.1.attn", True),
        (_hat, "layers.0.residual_group.blocks.1.attn", False),
        # DAT alternates spatial (even) and channel (odd) blocks: the last spatial one
        (_dat, "layers.1.blocks.0.attn", False),
    ]:
        model = _load(build())
        spec = locate_attention(model)
        assert spec.path == path
        assert spec.cosine is cosine
        assert find_attention_block(model) is dict(model.module.named_modules())[path]
    hat = _load(_hat())
    assert find_attention_block(hat) is not hat.module.layers[-1].residual_group.overlap_attn


def test_convolutional_model_has_no_attention_block(tiny_compact):
    with pytest.raises(ModelError, match="feature_attention_map"):
        find_attention_block(load_model(tiny_compact))


# --------------------------------------------------------------------------- transformer map
def _reference_map(model, image, pool, scale_mode="head_dim"):
    """Eqs. 12-14 the slow way: X after norm1 from a hook on norm1 itself, the attention
    module's own qkv layer, dense softmax, nearest-free bilinear upsampling."""
    spec = locate_attention(model)
    got = {}
    h = spec.block.norm1.register_forward_hook(lambda m, i, o: got.setdefault("x", o))
    with torch.no_grad():
        model.module(image)
    h.remove()
    x = got["x"][0]
    hh, ww = image.shape[-2:]
    c = x.shape[-1]
    feat = x.T.reshape(1, c, hh, ww)
    g = F.avg_pool2d(feat, pool)[0].reshape(c, -1).T
    qkv = spec.attn.qkv(g)
    heads = spec.num_heads
    d = c // heads
    q = qkv[:, :c].reshape(-1, heads, d).transpose(0, 1)
    k = qkv[:, c : 2 * c].reshape(-1, heads, d).transpose(0, 1)
    scale = d**-0.5 if scale_mode == "head_dim" else c**-0.5
    cols = _dense_columns(q, k, scale).reshape(hh // pool, ww // pool)
    return F.interpolate(cols[None, None], size=(hh, ww), mode="bilinear", align_corners=False)[0, 0]


@pytest.mark.parametrize("build", [_swinir, _hat, _dat])
def test_transformer_map_matches_reference(build, image):
    model = _sharpen_qk(_load(build()))
    amap = transformer_attention_map(model, image, pool=4)
    ref = _reference_map(model, image, 4)
    assert amap.shape == image.shape[-2:]
    assert torch.allclose(amap, ref, atol=1e-4)
    assert float(amap.std()) > 0.01  # a structured map, not a constant
    assert float(amap.mean()) == pytest.approx(1.0, abs=0.05)


def test_scale_modes(image):
    model = _sharpen_qk(_load(_swinir()))
    head = transformer_attention_map(model, image, pool=4)
    chan = transformer_attention_map(model, image, pool=4, scale="channels")
    assert torch.allclose(chan, _reference_map(model, image, 4, "channels"), atol=1e-4)
    assert not torch.allclose(head, chan, atol=1e-3)
    d = 12 // 2
    assert torch.allclose(transformer_attention_map(model, image, pool=4, scale=d**-0.5), head, atol=1e-6)
    # a softer softmax flattens the map
    assert float(chan.std()) < float(head.std())


def test_swin2sr_uses_its_cosine_attention(image):
    model = _load(_swin2sr())
    spec = locate_attention(model)
    got = {}
    prev = model.module.layers[0].residual_group.blocks[0]
    h = prev.register_forward_hook(lambda m, i, o: got.setdefault("x", o))  # post-norm: X as is
    amap = transformer_attention_map(model, image, pool=4)
    h.remove()
    x = got["x"][0]
    c, heads = x.shape[-1], spec.num_heads
    g = F.avg_pool2d(x.T.reshape(1, c, 32, 32), 4)[0].reshape(c, -1).T
    w, qb = spec.attn.qkv.weight, spec.attn.q_bias
    q = F.normalize((g @ w[:c].T + qb).reshape(-1, heads, c // heads).transpose(0, 1), dim=-1)
    k = F.normalize((g @ w[c : 2 * c].T).reshape(-1, heads, c // heads).transpose(0, 1), dim=-1)
    ls = torch.clamp(spec.attn.logit_scale.reshape(-1), max=math.log(100)).exp()
    cols = _dense_columns(q, k, ls).reshape(8, 8)
    ref = F.interpolate(cols[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(amap, ref.detach(), atol=1e-4)


def test_odd_sizes_are_padded_and_cropped(image):
    model = _sharpen_qk(_load(_swinir()))
    odd = image[..., :30, :27]
    amap = transformer_attention_map(model, odd, pool=4)
    assert amap.shape == (30, 27)
    assert torch.isfinite(amap).all()
    assert float(amap.mean()) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(InputError):
        transformer_attention_map(model, odd[0], pool=4)


# --------------------------------------------------------------------------- feature attention
def test_trunk_feature_rule(tiny_compact, tiny_span):
    from spandrel.architectures.ESRGAN import ESRGAN

    img = torch.rand(1, 3, 20, 18)
    torch.manual_seed(0)
    esrgan = _load(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=2, scale=4))
    # Compact(num_conv=2).body: conv, prelu, conv, prelu, conv, prelu, conv(3*s*s): the last
    # conv feeds the PixelShuffle, so the rule takes the last PReLU (body.5)
    cases = [(load_model(tiny_compact), "body.5"), (load_model(tiny_span), "conv_cat"), (esrgan, "model.1")]
    for model, name in cases:
        feat, got = capture_trunk_features(model, img)
        assert got == name
        assert feat.shape[-2:] == (20, 18) and feat.shape[1] > 4


def test_feature_map_matches_manual_computation(tiny_span, image):
    model = load_model(tiny_span)
    amap = feature_attention_map(model, image, pool=4, temperature=0.1)
    feat, _ = capture_trunk_features(model, image, layer="conv_cat")
    g = F.avg_pool2d(feat, 4)[0].reshape(feat.shape[1], -1).T
    g = F.normalize(g - g.mean(0), dim=-1)
    cols = _dense_columns(g[None], g[None], 10.0).reshape(8, 8)
    ref = F.interpolate(cols[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(amap, ref, atol=1e-4)
    assert float(amap.std()) > 0.01
    sharper = feature_attention_map(model, image, pool=4, temperature=0.02)
    assert float(sharper.std()) != pytest.approx(float(amap.std()), abs=1e-4)
    with pytest.raises(InputError, match="no layer named"):
        feature_attention_map(model, image, layer="nope")


# --------------------------------------------------------------------------- weights, viewing, cache
def test_attention_weights_follow_the_paper():
    m = torch.tensor([0.0, 0.5, 1.0, 2.0, 5.0])
    w = attention_weights(m)
    assert torch.allclose(w, torch.tensor([0.1, 0.55, 1.0, 1.9, 3.0]))


def test_save_heatmap(tmp_path, image):
    from PIL import Image

    m = torch.linspace(0, 1, 32)[None].expand(32, 32)
    p = save_heatmap(m, tmp_path / "a" / "map.png")
    arr = np.asarray(Image.open(p))
    assert arr.shape == (32, 32, 3)
    assert arr[:, -1].astype(int).sum() > arr[:, 0].astype(int).sum() + 32 * 200  # bright = high
    blended = np.asarray(Image.open(save_heatmap(m, tmp_path / "b.png", image=image)))
    assert not np.array_equal(blended, arr)
    with pytest.raises(InputError, match="does not match"):
        save_heatmap(m, tmp_path / "c.png", image=image[..., :16, :16])


def test_cache_memory_and_disk(tmp_path, tiny_span, image):
    model = load_model(tiny_span)
    calls = []

    def compute():
        calls.append(1)
        return feature_attention_map(model, image, pool=4)

    cache = AttentionCache(max_items=2, directory=tmp_path)
    a = cache.get_or_compute(image, model, compute, method="features", pool=4)
    b = cache.get_or_compute(image, model, compute, method="features", pool=4)
    assert len(calls) == 1 and torch.equal(a, b)
    cache.get_or_compute(image, model, compute, method="features", pool=2)
    cache.get_or_compute(image.flip(-1), model, compute, method="features", pool=4)
    assert len(calls) == 3 and len(cache) == 2  # LRU bound
    fresh = AttentionCache(directory=tmp_path)
    c = fresh.get_or_compute(image, model, compute, method="features", pool=4)
    assert len(calls) == 3 and torch.equal(a, c)
    # SPAN rewrites eval_conv on its first forward, so the first map is stored under the
    # keys before and after it: at least one file per distinct map
    assert len(list(tmp_path.glob("*.pt"))) >= 3


def test_cache_default_directory_is_ttasr_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TTASR_HOME", str(tmp_path))
    cache = AttentionCache(directory=True)
    assert cache.directory == tmp_path / "attention"
