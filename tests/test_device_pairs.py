"""Pair sampling on the sources' device: no host synchronisation, a resumable noise
generator, any float dtype.

A GPU waits for the host only when the host reads a device tensor (``item``, ``float``,
``bool``, ``tolist``, a copy to the CPU, an op whose output size depends on the data).
On the CPU the test stands a tensor subclass in for device tensors: every op on it
returns the subclass, and reading it on the host raises while armed. The random choices
come from a CPU generator as plain tensors, which the host may read.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from ttasr.degradations import add_poisson_noise
from ttasr.degradations.kernels import gaussian_kernels
from ttasr.pairs import AugmentConfig, BicubicKernel, GivenKernel, PairSampler, sample_pair

SCALE = 2
# everything on: all five photometric ops, USM, one noise or the other, grey or colour
ALL = AugmentConfig(photometric_p=1.0, photometric_ops=5, usm_p=0.5, gaussian_noise_p=0.5,
                    poisson_noise_p=0.5, gray_noise_p=0.5)


class HostRead(AssertionError):
    """The host read a (stand-in) device tensor: on a GPU this waits for the device."""


# Tensor methods and functions that return host values or data-dependent shapes.
_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__",
          "__format__", "__repr__", "nonzero", "unique", "unique_consecutive", "masked_select", "equal",
          "allclose", "repeat_interleave", "linalg_inv", "inverse", "_unique2"}


def _is_host_device(a: object) -> bool:
    return (isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu") or (
        isinstance(a, torch.Tensor) and not isinstance(a, DeviceTensor))


class DeviceTensor(torch.Tensor):
    """A CPU tensor that stands for one on an accelerator (see the module docstring)."""

    armed = False

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if cls.armed:
            name = getattr(func, "__name__", str(func))
            if name in _READS:
                raise HostRead(name)
            if name == "to" and isinstance(args[0], DeviceTensor) and (
                any(_is_host_device(a) for a in args[1:]) or _is_host_device(kwargs.get("device"))
            ):
                raise HostRead("copy to the host")
            if name == "copy_" and not isinstance(args[0], DeviceTensor):
                raise HostRead("copy_ to a host tensor")
            if name == "__getitem__" and _has_mask(args[1]):
                raise HostRead("boolean-mask indexing")
        return super().__torch_function__(func, types, args, kwargs)


def _has_mask(index: object) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


@contextlib.contextmanager
def armed() -> Iterator[None]:
    DeviceTensor.armed = True
    try:
        yield
    finally:
        DeviceTensor.armed = False


def on_device(t: torch.Tensor) -> DeviceTensor:
    return t.as_subclass(DeviceTensor)  # type: ignore[return-value]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _photo(dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    from skimage import data

    a = data.chelsea()[40:200, 100:280]  # 160 x 180
    b = data.astronaut()[60:180, 150:290]  # 120 x 140
    return [torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(dtype) / 255.0 for x in (a, b)]


def _kernel_estimate(y: torch.Tensor):
    return GivenKernel(gaussian_kernels(9, 1.2, 0.6, 0.5, shift=-0.5)[0].float()).estimate(y, SCALE)


def _sampler(sources, *, augment=ALL, weights=True, bicubic=False) -> PairSampler:
    g = _gen(99)
    maps = [torch.rand(1, 1, *y.shape[-2:], generator=g).to(y.dtype) * 2 if weights else None for y in sources]
    maps[-1] = None  # a weighted and an unweighted image in one batch
    estimates = [BicubicKernel().estimate(y, SCALE) if bicubic else _kernel_estimate(y) for y in sources]
    return PairSampler(sources, estimates, maps, scale=SCALE, patch_size=16, augment=augment)


# --------------------------------------------------------------------------- the detector
@pytest.mark.parametrize("read", [
    lambda t: t.sum().item(), lambda t: float(t.mean()), lambda t: int(t[0, 0, 0, 0]), lambda t: bool(t.any()),
    lambda t: t[0, 0, 0].tolist(), lambda t: t.cpu(), lambda t: t.numpy(), lambda t: t.to("cpu"),
    lambda t: torch.zeros(1, 1, 4, 4).copy_(t[..., :4, :4]), lambda t: torch.unique(t), lambda t: t[t > 0.5],
    lambda t: f"{t.sum():.3f}", lambda t: torch.equal(t, t), lambda t: torch.linalg.inv(t[0, 0, :3, :3]),
    lambda t: t.nonzero(),
])
def test_the_detector_catches_host_reads(read):
    t = on_device(torch.rand(1, 3, 8, 8))
    with armed(), pytest.raises(HostRead):
        read(t)
    assert type(t * 2 + torch.ones(1)) is DeviceTensor  # ops keep standing for device tensors


def test_the_detector_catches_a_real_host_read():
    """Real-ESRGAN's photon count per image (``levels=None``) counts distinct values."""
    x = on_device(torch.rand(1, 3, 8, 8))
    with armed(), pytest.raises(HostRead):
        add_poisson_noise(x, 0.5, generator=_gen(0))
    with armed():
        add_poisson_noise(x, 0.5, generator=_gen(0), levels=255)


# --------------------------------------------------------------------------- no host reads
@pytest.mark.parametrize("bicubic", [False, True])
def test_sampling_never_reads_device_tensors(bicubic):
    sources = [on_device(y) for y in _photo()]
    sampler = _sampler(sources, bicubic=bicubic)
    sampler.estimates = [dataclasses.replace(e, kernel=None if e.kernel is None else on_device(e.kernel))
                         for e in sampler.estimates]
    sampler.noise_generator = _gen(1)  # stands for a generator on the device
    g = _gen(0)
    with armed():
        for _ in range(6):
            inputs, targets, weights = sampler.sample(4, g)
    assert all(type(t) is DeviceTensor for t in (inputs, targets, weights))
    assert inputs.shape == (4, 3, 16, 16) and targets.shape == (4, 3, 32, 32) and weights.shape == (4, 1, 32, 32)


def test_every_augmentation_runs_without_host_reads():
    """One pair at a time, to see that each branch (affine, ops, USM, both noises, grey or
    not) ran while armed."""
    source = on_device(_photo()[0])
    weights = on_device(torch.rand(1, 1, *source.shape[-2:]))
    est = _kernel_estimate(source)
    g, noise = _gen(3), _gen(4)
    seen: set[str] = set()
    with armed():
        for _ in range(24):
            p = sample_pair(source, weights, est, SCALE, 16, ALL, g, noise).params
            seen.add(p["noise"].split("(")[0] + (" gray" if "gray" in p["noise"] else ""))
            seen.update(name for name, _ in p["photometric"])
            seen.update({"usm"} if p["usm"] else set())
            seen.update({"affine"} if p["affine_scale"] != 1 else set())
    assert seen >= {"gaussian", "gaussian gray", "poisson", "poisson gray", "usm", "affine", "hue", "gamma"}


# --------------------------------------------------------------------------- the noise generator
def test_cpu_samplers_draw_noise_from_the_callers_generator():
    sampler = _sampler(_photo())
    g = _gen(0)
    state = g.get_state()
    assert sampler.to("cpu", generator=g) is sampler
    assert torch.equal(g.get_state(), state)  # the CPU stream is untouched
    assert sampler.noise_generator is None and sampler.rng_state() is None
    sampler.set_rng_state(None)
    with pytest.raises(ValueError, match="no state"):
        sampler.set_rng_state(_gen(0).get_state())


def test_own_noise_generator_is_deterministic_and_resumable():
    def make(noise_seed: int = 11) -> PairSampler:
        s = _sampler(_photo())
        s.noise_generator = _gen(noise_seed)  # as a sampler on a GPU has one
        return s

    a, b = make(), make()
    ga, gb = _gen(0), _gen(0)
    for _ in range(3):
        for x, y in zip(a.sample(4, ga), b.sample(4, gb)):
            assert torch.equal(x, y)

    # a resumed run restores both generators and draws the same next batch
    saved = ga.get_state(), a.rng_state()
    after = a.sample(4, ga)
    ga.set_state(saved[0])
    a.set_rng_state(saved[1])
    for x, y in zip(after, a.sample(4, ga)):
        assert torch.equal(x, y)

    # the noise comes from the sampler's generator, everything else from the caller's
    c = make(12)
    first, other = make().sample(4, _gen(5)), c.sample(4, _gen(5))
    assert torch.equal(first[1], other[1]) and torch.equal(first[2], other[2])
    assert not torch.equal(first[0], other[0])


def test_a_separate_noise_generator_changes_only_the_noise():
    """With noise off, a sampler with its own noise generator gives the CPU batch exactly."""
    quiet = dataclasses.replace(ALL, gaussian_noise_p=0.0, poisson_noise_p=0.0)
    cpu, own = _sampler(_photo(), augment=quiet), _sampler(_photo(), augment=quiet)
    own.noise_generator = _gen(1)
    for x, y in zip(cpu.sample(4, _gen(2)), own.sample(4, _gen(2))):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------- dtypes
def test_float64_sources():
    quiet = dataclasses.replace(ALL, gaussian_noise_p=0.0, poisson_noise_p=0.0, usm_p=0.0)
    s64 = _sampler(_photo(torch.float64), augment=quiet).to("cpu")
    s32 = _sampler(_photo(), augment=quiet)
    assert all(e.kernel is not None and e.kernel.dtype == torch.float64 for e in s64.estimates)
    b64, b32 = s64.sample(4, _gen(6)), s32.sample(4, _gen(6))
    for x, y in zip(b64, b32):
        assert x.dtype == torch.float64 and x.shape == y.shape
        assert (x - y).abs().max() < 1e-4  # the same crops and ops, in double precision
    noisy = _sampler(_photo(torch.float64), bicubic=True).sample(8, _gen(7))
    assert all(t.dtype == torch.float64 and torch.isfinite(t).all() for t in noisy)
    assert 0 <= noisy[0].min() and noisy[0].max() <= 1


# --------------------------------------------------------------------------- a real GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bicubic", [False, True])
def test_cuda_sampling_never_synchronises(bicubic):
    sampler = _sampler(_photo(), bicubic=bicubic).to("cuda", generator=_gen(1))
    assert sampler.noise_generator is not None and sampler.noise_generator.device.type == "cuda"
    g = _gen(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = [sampler.sample(4, g) for _ in range(8)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(t.is_cuda for t in batches[-1])
    again = _sampler(_photo(), bicubic=bicubic).to("cuda", generator=_gen(1)).sample(4, _gen(0))
    for x, y in zip(batches[0], again):
        assert torch.equal(x, y)  # deterministic on the device too
