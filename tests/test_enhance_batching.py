"""Batched tiles, the output buffer, the cached placed copy, and no host synchronisation in
the tile loop: what makes `enhance` run at the bare model's speed on a GPU, checked on the CPU
through the same code."""

from __future__ import annotations

import copy
import importlib
import pickle
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import ttasr
from ttasr.inference import enhance, enhance_tensor
from ttasr.inference.tiling import tile_starts
from ttasr.models import SRModel

enhance_mod = importlib.import_module("ttasr.inference.enhance")  # the name ttasr.inference.enhance is the function


def tiny_net(scale: int = 2, seed: int = 0) -> nn.Module:
    """Three 3x3 convs then PixelShuffle: receptive-field radius 3 LR pixels."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale),
    )


class Counted(nn.Module):
    """Wraps a network; records the batch size of every call."""

    def __init__(self, net: nn.Module, log: list[Any] | None = None):
        super().__init__()
        self.net = net
        self.log = log if log is not None else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(("forward", x.shape[0]))
        return self.net(x)


def _model(net: nn.Module, **flags: Any) -> SRModel:
    m = ttasr.load_model(net, scale=2)
    for k, v in flags.items():
        setattr(m, k, v)
    if isinstance(net, Counted):
        net.log.clear()  # load_model's scale probe is not an enhance call
    return m


# ---------------------------------------------------------------------------- batches
@pytest.mark.parametrize("tile_batch", [2, 5, 7, 100])
def test_batched_tiles_equal_one_at_a_time(tile_batch) -> None:
    """Batches mix tiles of several images (5 and 7 do not divide the 12 tiles per image)."""
    counted = Counted(tiny_net())
    model = _model(counted)
    x = torch.rand(3, 3, 50, 70)
    one = enhance_tensor(model, x, tile=24, overlap=12, tile_batch=1, clamp=False)
    n = 3 * len(tile_starts(50, 24, 12)) * len(tile_starts(70, 24, 12))
    assert [b for _, b in counted.log] == [1] * n
    counted.log.clear()
    many = enhance_tensor(model, x, tile=24, overlap=12, tile_batch=tile_batch, clamp=False)
    k = min(tile_batch, n)
    assert [b for _, b in counted.log] == [k] * (n // k) + ([n % k] if n % k else [])
    assert float((many - one).abs().max()) < 1e-6
    auto = enhance_tensor(model, x, tile=24, overlap=12, clamp=False)  # one per batch on the CPU
    assert float((auto - one).abs().max()) < 1e-6


def test_whole_images_of_a_batch_run_in_tile_batches() -> None:
    counted = Counted(tiny_net())
    model = _model(counted)
    x = torch.rand(5, 3, 20, 30)
    ref = enhance_tensor(model, x, tile=None, tile_batch=5, clamp=False)
    counted.log.clear()
    out = enhance_tensor(model, x, tile=None, tile_batch=2, clamp=False)
    assert [b for _, b in counted.log] == [2, 2, 1]
    assert out.shape == (5, 3, 40, 60) and float((out - ref).abs().max()) < 1e-6
    with torch.no_grad():
        assert float((ref - tiny_net()(x)).abs().max()) == 0.0


def test_gray_and_rgb_batches_through_batched_tiles() -> None:
    model = _model(tiny_net())
    gray = torch.rand(2, 1, 40, 44)
    out = enhance_tensor(model, gray, tile=16, overlap=8, tile_batch=3, clamp=False)
    ref = enhance_tensor(model, gray.expand(-1, 3, -1, -1), tile=16, overlap=8, tile_batch=1, clamp=False)
    assert out.shape == (2, 3, 80, 88) and float((out - ref).abs().max()) < 1e-6


def test_bad_tile_batch() -> None:
    with pytest.raises(ttasr.errors.InputError, match="tile_batch=0"):
        enhance_tensor(_model(tiny_net()), torch.rand(1, 3, 8, 8), tile_batch=0)


def test_channels_last_gives_the_same_result() -> None:
    model = _model(tiny_net())
    x = torch.rand(2, 3, 40, 52)
    ref = enhance_tensor(model, x, tile=24, overlap=12, clamp=False)
    for tile in (24, None):
        out = enhance_tensor(model, x, tile=tile, overlap=12, tile_batch=3, channels_last=True, clamp=False)
        assert out.is_contiguous()
        assert float((out - ref).abs().max()) < 1e-5


def test_output_staged_on_the_host_equals_the_device_buffer(monkeypatch) -> None:
    """The path for outputs too large for the GPU: weighted on the device, copied into
    (pinned, on CUDA) staging buffers, added up on the CPU one batch behind."""
    model = _model(tiny_net())
    x = torch.rand(2, 3, 50, 70)
    tiled = enhance_tensor(model, x, tile=24, overlap=12, tile_batch=5, clamp=False)
    whole = enhance_tensor(model, x, tile=None, tile_batch=1, clamp=False)
    monkeypatch.setattr(enhance_mod, "_output_fits", lambda nbytes, device: False)
    staged = enhance_tensor(model, x, tile=24, overlap=12, tile_batch=5, clamp=False)
    assert float((staged - tiled).abs().max()) < 1e-6
    staged = enhance_tensor(model, x, tile=None, tile_batch=1, clamp=False)
    assert float((staged - whole).abs().max()) == 0.0


def test_progress_counts_tiles_and_updates_per_batch(capsys, monkeypatch) -> None:
    from tqdm.auto import tqdm

    steps: list[int] = []
    original = tqdm.update

    def update(self: Any, n: float | None = 1) -> Any:
        steps.append(int(n or 0))
        return original(self, n)

    monkeypatch.setattr(tqdm, "update", update)
    model = _model(tiny_net())
    enhance_tensor(model, torch.rand(2, 3, 40, 40), tile=16, overlap=8, tile_batch=5, progress=True)
    n = 2 * len(tile_starts(40, 16, 8)) ** 2
    err = capsys.readouterr().err
    assert "tiles" in err and f"0/{n}" in err
    assert steps == [5] * (n // 5) + [n % 5]


def test_enhance_returns_cpu_results_and_takes_the_new_options() -> None:
    import numpy as np

    model = _model(tiny_net())
    img = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    a = enhance(model, img, tile=16, overlap=8, tile_batch=3, channels_last=True)
    b = enhance(model, img, tile=16, overlap=8, tile_batch=1)
    assert a.shape == (60, 80, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ---------------------------------------------------------------------------- placed copy
def _count_copies(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = SRModel.trainable_copy

    def counting(self: SRModel) -> nn.Module:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(SRModel, "trainable_copy", counting)
    return calls


def test_placed_copy_is_reused_and_rebuilt_when_weights_change(monkeypatch) -> None:
    copies = _count_copies(monkeypatch)
    model = _model(tiny_net(), supports_bfloat16=True)
    x = torch.rand(1, 3, 24, 24)
    a = enhance_tensor(model, x, dtype="bf16", clamp=False)
    b = enhance_tensor(model, x, dtype=torch.bfloat16, tile=16, overlap=8, clamp=False)
    assert len(copies) == 1
    entry = model._placed_copies.entries[(torch.device("cpu"), torch.bfloat16, False)]
    assert entry.module is not model.module and next(entry.module.parameters()).dtype == torch.bfloat16
    assert model.dtype == torch.float32 and float((a - b).abs().max()) < 0.05

    enhance_tensor(model, x)  # float32 on the CPU: the model itself, no copy
    assert len(copies) == 1

    with torch.no_grad():  # an in-place training step
        for p in model.module.parameters():
            p.mul_(1.5)
    c = enhance_tensor(model, x, dtype="bf16", clamp=False)
    assert len(copies) == 2 and float((c - a).abs().max()) > 0.01
    assert float((c - enhance_tensor(model, x, clamp=False)).abs().max()) < 0.1  # the new weights, in bf16

    optimizer = torch.optim.SGD(model.module.parameters(), lr=0.1)
    model.module.requires_grad_(True)
    model.module(x).mean().backward()
    optimizer.step()
    enhance_tensor(model, x, dtype="bf16")
    assert len(copies) == 3

    model.module.load_state_dict(tiny_net(seed=1).state_dict())
    d = enhance_tensor(model, x, dtype="bf16", clamp=False)
    assert len(copies) == 4
    ref = enhance_tensor(_model(tiny_net(seed=1)), x, clamp=False)
    assert float((d - ref).abs().max()) < 0.05

    # another layout is another copy; both are kept
    enhance_tensor(model, x, dtype="bf16", channels_last=True)
    enhance_tensor(model, x, dtype="bf16")
    assert len(copies) == 5 and len(model._placed_copies.entries) == 2
    cl = model._placed_copies.entries[(torch.device("cpu"), torch.bfloat16, True)].module
    assert cl[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_shallow_copies_of_a_model_keep_their_own_copies(monkeypatch) -> None:
    copies = _count_copies(monkeypatch)
    model = _model(tiny_net(), supports_bfloat16=True)
    x = torch.rand(1, 3, 16, 16)
    enhance_tensor(model, x, dtype="bf16")
    other = model.with_weights(tiny_net(seed=2))  # shares model's attributes (copy.copy)
    out_other = enhance_tensor(other, x, dtype="bf16", clamp=False)
    assert len(copies) == 2
    out_model = enhance_tensor(model, x, dtype="bf16", clamp=False)
    assert len(copies) == 2  # model's copy was not evicted by other's
    assert float((out_model - out_other).abs().max()) > 0.01
    ref = enhance_tensor(_model(tiny_net(seed=2)), x, clamp=False)
    assert float((out_other - ref).abs().max()) < 0.05


def test_models_with_copies_pickle_and_deepcopy_without_them() -> None:
    model = _model(tiny_net(), supports_bfloat16=True)
    x = torch.rand(1, 3, 16, 16)
    out = enhance_tensor(model, x, dtype="bf16")
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone._placed_copies is None
        assert torch.equal(enhance_tensor(clone, x, dtype="bf16"), out)


# ---------------------------------------------------------------------------- no host sync
_SYNCING = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")
"""Tensor methods that make the host wait for a GPU (on a CUDA tensor)."""


def _record_syncs(monkeypatch, log: list[Any]) -> None:
    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            log.append((name, tuple(self.shape)))
            return original(self, *args, **kwargs)

        return recorded

    for name in _SYNCING:
        monkeypatch.setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    original_to = torch.Tensor.to

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # a copy to the host from ttasr's own inference code (SRModel moves inputs to its device)
        target = [a for a in (*args, kwargs.get("device")) if isinstance(a, (str, torch.device))]
        caller = sys._getframe(1).f_code.co_filename
        if any(torch.device(t).type == "cpu" for t in target) and "inference" in caller:
            log.append(("to cpu", tuple(self.shape)))
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    for owner, name in ((torch.cuda, "synchronize"), (torch.cuda.Event, "synchronize"),
                        (torch.cuda.Stream, "synchronize")):
        monkeypatch.setattr(owner, name, wrap(f"cuda.{name}", getattr(owner, name)))


@pytest.mark.parametrize("size,tile_batch,staged", [((60, 90), 1, False), ((60, 90), 4, False),
                                                     ((200, 90), 4, False), ((60, 90), 4, True)])
def test_no_host_sync_inside_the_tile_loop(monkeypatch, size, tile_batch, staged) -> None:
    """Nothing between the first and the last model call reads a tensor on the host, so a GPU
    is never left idle waiting for the CPU. Outside the loop, the number of such reads does not
    grow with the number of tiles. (On the staged path, the CPU waits for each batch's copy,
    one batch behind the GPU: that is the only wait.)"""
    if staged:
        monkeypatch.setattr(enhance_mod, "_output_fits", lambda nbytes, device: False)
    outside = []
    for scale_up in (1, 2):
        log: list[Any] = []
        model = _model(Counted(tiny_net(), log))
        hw = (size[0] * scale_up, size[1] * scale_up)
        with monkeypatch.context() as patch:
            _record_syncs(patch, log)
            enhance_tensor(model, torch.rand(2, 3, *hw), tile=24, overlap=12, tile_batch=tile_batch)
        calls = [i for i, (what, _) in enumerate(log) if what == "forward"]
        tiles = 2 * len(tile_starts(hw[0], 24, 12)) * len(tile_starts(hw[1], 24, 12))
        assert sum(b for what, b in log if what == "forward") == tiles and len(calls) >= 3
        inside = [e for e in log[calls[0]:calls[-1]] if e[0] != "forward"]
        assert inside == [], inside
        outside.append([e[0] for e in log if e[0] != "forward"])
    # the input's move, one check of the layout per axis, the result's move
    assert outside[0] == outside[1] and len(outside[0]) <= 4, outside


def test_the_sync_recorder_sees_a_per_tile_sync(monkeypatch) -> None:
    """The test above would catch a ``float()`` per tile."""
    log: list[Any] = []

    class Reading(Counted):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            float(y.abs().max())
            return y

    model = _model(Reading(tiny_net(), log))
    with monkeypatch.context() as patch:
        _record_syncs(patch, log)
        enhance_tensor(model, torch.rand(1, 3, 60, 90), tile=24, overlap=12)
    calls = [i for i, (what, _) in enumerate(log) if what == "forward"]
    assert any(e[0] == "__float__" for e in log[calls[0]:calls[-1]])


# ---------------------------------------------------------------------------- CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_results_stay_on_the_input_device_and_match_the_cpu(monkeypatch) -> None:
    model = _model(tiny_net(), supports_half=True)
    x = torch.rand(2, 3, 100, 130)
    for tile in (32, None):
        ref = enhance_tensor(model, x, tile=tile, overlap=12, clamp=False)
        on_gpu = enhance_tensor(model, x.cuda(), tile=tile, overlap=12, device="cuda", clamp=False)
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32 and on_gpu.is_contiguous()
        assert float((on_gpu.cpu() - ref).abs().max()) < 2e-3  # TF32 convolutions
        back = enhance_tensor(model, x, tile=tile, overlap=12, device="cuda", clamp=False)
        assert back.device.type == "cpu" and float((back - on_gpu.cpu()).abs().max()) < 1e-6
        half = enhance_tensor(model, x.cuda(), tile=tile, overlap=12, device="cuda", dtype="fp16", clamp=False)
        assert half.device.type == "cuda" and float((half.cpu() - ref).abs().max()) < 1e-2
        monkeypatch.setattr(enhance_mod, "_output_fits", lambda nbytes, device: False)
        staged = enhance_tensor(model, x.cuda(), tile=tile, overlap=12, device="cuda", clamp=False)
        monkeypatch.undo()
        assert staged.device.type == "cuda" and float((staged - on_gpu).abs().max()) < 1e-6
    assert len(model._placed_copies.entries) == 2  # (cuda, float32, channels-last) and (cuda, float16, ...)


@cuda
def test_cuda_tile_loop_never_synchronises() -> None:
    """PyTorch's sync debug mode raises on any operation that makes the host wait for the GPU."""
    model = _model(tiny_net(), supports_half=True)
    x = torch.rand(2, 3, 100, 130, device="cuda")
    for options in ({"dtype": "fp16"}, {"tile_batch": 3}, {"tile": None}):
        enhance_tensor(model, x, device="cuda", **{"tile": 32, **options})  # makes the cast copy
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = enhance_tensor(model, x, device="cuda", **{"tile": 32, **options})
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert out.shape == (2, 3, 200, 260)
