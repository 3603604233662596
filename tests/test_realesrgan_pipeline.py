"""Real-ESRGAN's second-order degradation (METHODS.md §4): every stage on its own, then the
whole pipeline. Small images; the statistics use fixed seeds, so they are deterministic."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from PIL import Image

from ttasr.degradations.blur_kernels import (
    KERNEL_FAMILIES,
    BlurConfig,
    apply_blur,
    draw_blur_kernel,
    random_blur_kernel,
    random_sinc_kernel,
    sinc_kernel,
)
from ttasr.degradations.jpeg_codec import (
    draw_jpeg_quality,
    encode_jpeg,
    jpeg_roundtrip,
    random_jpeg,
)
from ttasr.degradations.kernels import blur
from ttasr.degradations.noise import jpeg, quantize_8bit
from ttasr.degradations.random_noise import NoiseConfig, random_noise
from ttasr.degradations.realesrgan import (
    RealESRGANConfig,
    apply_second_order,
    degrade_realesrgan,
    degrade_realesrgan_batch,
    draw_realesrgan_params,
    usm_sharpen,
)
from ttasr.degradations.resize import ResizeConfig, draw_resize, random_resize
from ttasr.errors import InputError

CHI2_999 = {6: 22.46, 7: 24.32}  # chi-square quantiles at p = 0.999


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chi2(counts: list[int], probs: list[float]) -> float:
    n = sum(counts)
    return sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs))


def image(b: int = 1, h: int = 48, w: int = 48, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Smooth colour gradients plus texture: not flat, so every step changes something."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, 0.5 * (xx + yy)])[None].expand(b, 3, h, w)
    tex = 0.2 * torch.rand(b, 3, h, w, generator=gen(seed))
    return (0.1 + 0.7 * base + tex).clamp(0, 1).to(dtype)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("stage", [1, 2])
def test_kernels_sum_to_one_have_the_drawn_size_and_parameters_in_range(stage):
    cfg = RealESRGANConfig().blur_config(stage)
    g = gen(stage)
    for _ in range(150):
        k, d = random_blur_kernel(g, cfg)
        assert k.dtype == torch.float64 and k.shape == (d.size, d.size)
        assert d.size % 2 == 1 and 7 <= d.size <= 21
        assert k.sum().item() == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(k, k.flip(-1, -2))  # point-symmetric: convolution = correlation
        if d.family == "sinc":
            lo = math.pi / 3 if d.size < 13 else math.pi / 5
            assert lo <= d.omega_c <= math.pi and d.sigma_x is None
            continue
        lo, hi = (0.2, 3.0) if stage == 1 else (0.2, 1.5)
        assert lo <= d.sigma_x <= hi and lo <= d.sigma_y <= hi and -math.pi <= d.theta <= math.pi
        if not d.family.endswith("aniso"):
            assert d.sigma_y == d.sigma_x and d.theta == 0.0
        if d.family.startswith("generalized"):
            assert 0.5 <= d.beta <= 4.0
        elif d.family.startswith("plateau"):
            assert 1.0 <= d.beta <= 2.0
        else:
            assert d.beta is None


def test_anisotropic_kernel_covariance_matches_drawn_sigmas_and_angle():
    cfg = BlurConfig(kernel_sizes=(21, 21), family_probs=(0, 1, 0, 0, 0, 0), sigma=(1.0, 2.5), sinc_prob=0.0)
    r = torch.arange(21, dtype=torch.float64) - 10
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    g = gen(7)
    for _ in range(20):
        k, d = random_blur_kernel(g, cfg)
        assert d.family == "aniso"
        m = torch.tensor([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
        c, s = math.cos(d.theta), math.sin(d.theta)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        expected = rot @ torch.diag(torch.tensor([d.sigma_x**2, d.sigma_y**2], dtype=torch.float64)) @ rot.T
        torch.testing.assert_close(m, expected, rtol=0.01, atol=0.02)
        assert (k * xx).sum().abs() < 1e-12 and (k * yy).sum().abs() < 1e-12  # centred


@pytest.mark.parametrize("omega_c", [math.pi / 3, math.pi / 2, 2 * math.pi / 3])
def test_sinc_kernel_has_the_expected_cutoff(omega_c):
    # a 21-px truncation of the ideal low-pass: pass band within 20 %, stop band below 10 %
    k = sinc_kernel(21, omega_c, torch.float64)
    n = 256
    resp = torch.fft.fft2(k, s=(n, n)).abs()
    f = torch.fft.fftfreq(n, dtype=torch.float64) * 2 * math.pi
    rho = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    passband, stopband = resp[rho < 0.5 * omega_c], resp[rho > 1.5 * omega_c]
    assert resp[0, 0].item() == pytest.approx(1.0)
    assert passband.min() > 0.8 and passband.max() < 1.2 and (passband.mean() - 1).abs() < 0.1
    assert stopband.max() < 0.1 and stopband.mean() < 0.02
    ring = resp[(rho - omega_c).abs() < 0.03]  # half amplitude at the cut-off
    assert ring.mean().item() == pytest.approx(0.5, abs=0.1)


def test_final_sinc_draws():
    g = gen(11)
    for _ in range(50):
        k, d = random_sinc_kernel(g)
        assert d.family == "sinc" and 7 <= d.size <= 21 and math.pi / 3 <= d.omega_c <= math.pi
        assert k.shape == (d.size, d.size) and k.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_family_and_size_frequencies_match_real_esrgan():
    cfg, n = BlurConfig(), 3000
    g = gen(2021)
    draws = [draw_blur_kernel(g, cfg) for _ in range(n)]
    names = ("sinc", *KERNEL_FAMILIES)
    probs = [0.1] + [0.9 * p for p in (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)]
    counts = [sum(d.family == f for d in draws) for f in names]
    assert chi2(counts, probs) < CHI2_999[6], dict(zip(names, counts))
    sizes = [sum(d.size == s for d in draws) for s in range(7, 22, 2)]
    assert chi2(sizes, [1 / 8] * 8) < CHI2_999[7], sizes
    # beta: half of the draws below 1, half above (a plateau's beta in [1, 2] is 1 half the time)
    gen_betas = [d.beta for d in draws if d.family.startswith("generalized")]
    assert 0.35 < sum(b < 1 for b in gen_betas) / len(gen_betas) < 0.65
    plateau_betas = [d.beta for d in draws if d.family.startswith("plateau")]
    assert 0.35 < sum(b == 1.0 for b in plateau_betas) / len(plateau_betas) < 0.65


def test_apply_blur_gives_each_image_its_own_kernel():
    x = image(3, 24, 30, dtype=torch.float64)
    ks = [random_blur_kernel(gen(1))[0], sinc_kernel(21, math.pi / 2, torch.float64), None]
    assert ks[0].shape[-1] != 21
    out = apply_blur(x, ks)
    for i in range(2):
        torch.testing.assert_close(out[i : i + 1], blur(x[i : i + 1], ks[i]), rtol=0, atol=1e-12)
    assert torch.equal(out[2], x[2])
    same = apply_blur(x, ks[1])  # one kernel for the whole batch
    torch.testing.assert_close(same, blur(x, ks[1]), rtol=0, atol=1e-12)
    tiny = apply_blur(x[..., :3, :3], ks[:2] + [ks[0]])  # too small to reflect: replicate
    assert tiny.shape == (3, 3, 3, 3) and torch.isfinite(tiny).all()
    with pytest.raises(InputError, match="one kernel per image"):
        apply_blur(x, ks[:2])


# --------------------------------------------------------------------------- resize


def test_resize_draws_follow_the_stage_probabilities_and_ranges():
    cfg = ResizeConfig()  # stage 1: up/down/keep 0.2/0.7/0.1, factors [0.15, 1.5]
    g, n = gen(5), 1500
    draws = [draw_resize(g, cfg, (100, 60)) for _ in range(n)]
    counts = [sum(d.direction == k for d in draws) for k in ("up", "down", "keep")]
    assert chi2(counts, [0.2, 0.7, 0.1]) < 13.8, counts  # 2 dof, p = 0.001
    modes = [sum(d.mode == m for d in draws) for m in ("area", "bilinear", "bicubic")]
    assert chi2(modes, [1 / 3] * 3) < 13.8, modes
    for d in draws:
        lo, hi = {"up": (1.0, 1.5), "down": (0.15, 1.0), "keep": (1.0, 1.0)}[d.direction]
        assert lo <= d.factor <= hi
        assert d.size == (max(1, int(100 * d.factor)), max(1, int(60 * d.factor)))
    x = image(2, 40, 32)
    g = gen(6)
    for _ in range(8):
        y, d = random_resize(x, g, ResizeConfig((0.3, 0.4, 0.3), (0.3, 1.2)), reference=(10, 8))
        assert y.shape == (2, 3, *d.size) and y.dtype == x.dtype
        assert 0.3 <= d.factor <= 1.2


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise_level_is_recovered_from_residuals(gray):
    flat = torch.full((6, 3, 64, 64), 0.5)
    cfg = NoiseConfig(gaussian_prob=1.0, gaussian_sigma=(1.0, 30.0), gray_prob=1.0 if gray else 0.0)
    noisy, draws = random_noise(flat, gen(8), cfg)
    residual = (noisy - flat).double()
    for i, d in enumerate(draws):
        assert d.kind == "gaussian" and d.gray is gray and 1.0 <= d.level <= 30.0
        std = residual[i].flatten(1).std(dim=1) * 255  # per channel
        torch.testing.assert_close(std, torch.full_like(std, d.level), rtol=0.05, atol=0.05)
        if gray:
            assert torch.equal(residual[i, 0], residual[i, 1]) and torch.equal(residual[i, 0], residual[i, 2])
        else:
            corr = torch.corrcoef(residual[i].flatten(1))
            assert (corr - torch.eye(3, dtype=corr.dtype)).abs().max() < 0.1
    assert len({round(d.level, 6) for d in draws}) == 6  # each image its own level


def test_noise_kinds_and_poisson_draws():
    g = gen(9)
    draws = [random_noise(image(1, 16, 16), g, NoiseConfig(poisson_scale=(0.05, 2.5)))[1][0] for _ in range(200)]
    assert 0.4 < sum(d.kind == "gaussian" for d in draws) / 200 < 0.6
    assert 0.3 < sum(d.gray for d in draws) / 200 < 0.5
    assert all(0.05 <= d.level <= 2.5 for d in draws if d.kind == "poisson")
    assert all(1.0 <= d.level <= 30.0 for d in draws if d.kind == "gaussian")
    x = image(2, 32, 32)
    noisy, ds = random_noise(x, gen(10), NoiseConfig(gaussian_prob=0.0, gray_prob=1.0))
    res = noisy - x
    inner = (noisy > 0) & (noisy < 1)  # grey Poisson noise is one map on R, G and B (up to clipping)
    both = inner[:, 0] & inner[:, 1] & inner[:, 2]
    assert all(d.kind == "poisson" and d.gray for d in ds)
    torch.testing.assert_close(res[:, 0][both], res[:, 1][both], rtol=0, atol=1e-6)
    assert res.abs().max() > 0.01


# --------------------------------------------------------------------------- JPEG

# ITU-T T.81 Annex K, the tables libjpeg scales by the quality (natural order)
IJG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
IJG_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
              47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def ijg_table(base: list[int], quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (b * scale + 50) // 100)) for b in base]


def quality_of(data: bytes) -> list[int]:
    """Every quality whose scaled IJG tables are the file's quantisation tables."""
    with Image.open(io.BytesIO(data)) as im:
        tables = {k: list(v) for k, v in im.quantization.items()}
    return [q for q in range(1, 101) if tables[0] == ijg_table(IJG_LUMA, q) and tables[1] == ijg_table(IJG_CHROMA, q)]


def test_jpeg_quality_recovered_from_the_quantisation_tables():
    x = image(5, 32, 40)
    out, qualities = random_jpeg(x, gen(12), (30, 95))
    assert len(set(qualities)) == 5 and all(30 <= q <= 95 for q in qualities)
    files = encode_jpeg(x, qualities)
    assert [quality_of(f) for f in files] == [[q] for q in qualities]
    assert torch.equal(out, jpeg_roundtrip(x, qualities))
    assert torch.equal(out, jpeg(x, qualities))  # the library's other JPEG, bit for bit
    assert torch.equal(out, quantize_8bit(out)) and out.dtype == x.dtype
    g = gen(13)
    drawn = [draw_jpeg_quality(g, (30, 95)) for _ in range(2000)]
    assert min(drawn) == 30 and max(drawn) == 95 and len(set(drawn)) == 66


# --------------------------------------------------------------------------- pipeline


def test_pipeline_is_deterministic_under_a_seed():
    hr = image(2, 48, 48)
    a, pa = degrade_realesrgan_batch(hr, 4, gen(3))
    b, pb = degrade_realesrgan_batch(hr, 4, gen(3))
    c, pc = degrade_realesrgan_batch(hr, 4, gen(4))
    assert torch.equal(a, b) and [p.as_dict() for p in pa] == [p.as_dict() for p in pb]
    assert not torch.equal(a, c) and pa[0].as_dict() != pc[0].as_dict()
    json.dumps([p.as_dict() for p in pa])  # the record is plain data


def test_pipeline_output_has_the_target_size_and_is_8_bit():
    for seed, (h, w), s in [(0, (48, 64), 4), (1, (40, 56), 4), (2, (33, 47), 3), (3, (30, 30), 2), (4, (48, 48), 1)]:
        hr = image(2, h, w, seed=seed)
        lr, params = degrade_realesrgan_batch(hr, s, gen(seed))
        assert lr.shape == (2, 3, math.ceil(h / s), math.ceil(w / s)) and lr.dtype == hr.dtype
        assert lr.min() >= 0 and lr.max() <= 1 and torch.equal(lr, quantize_8bit(lr))
        assert all(p.final.size == (math.ceil(h / s), math.ceil(w / s)) for p in params)


def test_batched_call_gives_each_image_its_own_draws():
    one = image(1, 48, 48)
    hr = one.expand(3, -1, -1, -1).contiguous()  # the same image three times
    lr, params = degrade_realesrgan_batch(hr, 4, gen(21))
    dicts = [json.dumps(p.as_dict(), sort_keys=True) for p in params]
    assert len(set(dicts)) == 3
    assert not torch.equal(lr[0], lr[1]) and not torch.equal(lr[1], lr[2])
    # drawing then applying is the same computation
    g = gen(21)
    drawn = [draw_realesrgan_params(g, (48, 48), 4) for _ in range(3)]
    assert [p.as_dict() for p in drawn] == [p.as_dict() for p in params]
    assert torch.equal(apply_second_order(usm_sharpen(hr), drawn, g), lr)


def test_drawn_parameters_fall_in_the_configured_ranges():
    cfg, g, n = RealESRGANConfig(), gen(31), 400
    ps = [draw_realesrgan_params(g, (64, 64), 4, cfg) for _ in range(n)]
    for p in ps:
        s1, s2, f = p.stage1, p.stage2, p.final
        assert 30 <= s1.jpeg_quality <= 95 and 30 <= f.jpeg_quality <= 95 and s2.jpeg_quality is None
        for st, sigma, poisson in ((s1, (1, 30), (0.05, 3.0)), (s2, (1, 25), (0.05, 2.5))):
            lo, hi = sigma if st.noise.kind == "gaussian" else poisson
            assert lo <= st.noise.level <= hi
        lo1, hi1 = {"up": (1, 1.5), "down": (0.15, 1), "keep": (1, 1)}[s1.resize.direction]
        lo2, hi2 = {"up": (1, 1.2), "down": (0.3, 1), "keep": (1, 1)}[s2.resize.direction]
        assert lo1 <= s1.resize.factor <= hi1 and lo2 <= s2.resize.factor <= hi2
        assert s1.resize.size == (int(64 * s1.resize.factor),) * 2
        assert s2.resize.size == (max(1, int(16 * s2.resize.factor)),) * 2  # relative to the LR size
        assert f.size == (16, 16) and f.mode in ("area", "bilinear", "bicubic")
        if s1.blur.family != "sinc":
            assert 0.2 <= s1.blur.sigma_x <= 3.0
        if s2.blur is not None and s2.blur.family != "sinc":
            assert 0.2 <= s2.blur.sigma_x <= 1.5 and 0.2 <= s2.blur.sigma_y <= 1.5
        if f.sinc is not None:
            assert math.pi / 3 <= f.sinc.omega_c <= math.pi and 7 <= f.sinc.size <= 21
    frac = lambda cond: sum(map(cond, ps)) / n
    assert 0.72 < frac(lambda p: p.stage2.blur is not None) < 0.88  # second_blur_prob 0.8
    assert 0.72 < frac(lambda p: p.final.sinc is not None) < 0.88  # final_sinc_prob 0.8
    assert 0.42 < frac(lambda p: p.final.resize_first) < 0.58
    assert 0.42 < frac(lambda p: p.stage2.noise.kind == "gaussian") < 0.58
    assert 0.32 < frac(lambda p: p.stage1.noise.gray) < 0.48
    assert 0.62 < frac(lambda p: p.stage1.resize.direction == "down") < 0.78
    assert 0.33 < frac(lambda p: p.stage2.resize.direction == "down") < 0.47


def test_pipeline_and_stages_run_in_float64():
    hr = image(2, 32, 32, dtype=torch.float64)
    lr, _ = degrade_realesrgan_batch(hr, 4, gen(0))
    assert lr.dtype == torch.float64 and lr.shape == (2, 3, 8, 8) and torch.equal(lr, quantize_8bit(lr))
    g = gen(1)
    assert apply_blur(hr, random_blur_kernel(g)[0]).dtype == torch.float64
    assert random_resize(hr, g)[0].dtype == torch.float64
    assert random_noise(hr, g)[0].dtype == torch.float64
    assert random_jpeg(hr, g)[0].dtype == torch.float64


def test_degrade_realesrgan_keeps_its_api():
    hr = image(2, 32, 32)
    res = degrade_realesrgan(hr, 4, seed=7)
    lr, params = degrade_realesrgan_batch(hr, 4, gen(7))
    assert torch.equal(res.lr, lr) and [p.as_dict() for p in res.params] == [p.as_dict() for p in params]
    torch.testing.assert_close(res.hr, usm_sharpen(hr))
    plain = degrade_realesrgan(hr, 4, seed=7, config=RealESRGANConfig(usm=False))
    assert plain.hr is hr and plain.lr.shape == (2, 3, 8, 8)


def test_configs_are_checked():
    with pytest.raises(InputError, match="kernel_sizes"):
        RealESRGANConfig(kernel_sizes=(6, 21))
    with pytest.raises(InputError, match="family_probs"):
        RealESRGANConfig(kernel_probs=(1.0, 0.0))
    with pytest.raises(InputError, match="jpeg_range"):
        RealESRGANConfig(jpeg_range2=(30, 101))
    with pytest.raises(InputError, match="probability"):
        RealESRGANConfig(final_sinc_prob=1.5)
    with pytest.raises(InputError, match="range"):
        ResizeConfig(range=(0.5, 0.9))
