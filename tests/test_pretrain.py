"""Pretraining the HR-aware LR reconstruction network: the saved file and its record of E_c,
bit-exact resume after Ctrl-C, the command line, and the default reconstructor built once
on first use (with a tiny recipe: the real one takes about 20 minutes)."""

from __future__ import annotations

import logging
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import ttasr
from ttasr.cli import main
from ttasr.methods.hraware import (
    LRReconstructionNetwork,
    PretrainConfig,
    ReconstructorRecipe,
    pretrain_reconstructor,
    reconstructor_path,
)
from ttasr.methods.hraware import pretrain as pretrain_module
from ttasr.methods.hraware import reconstructors
from hraware_tiny import TINY_NET, one_thread  # noqa: F401 - one_thread is an autouse fixture

FAST = dict(network=TINY_NET, batch_size=2, hr_patch=16, hqi_distance="encoder", progress=False, device="cpu")



@pytest.fixture
def hr_dir(tmp_path, photo):
    folder = tmp_path / "hr"
    folder.mkdir()
    img = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for i, (t, left) in enumerate([(0, 0), (40, 48)]):
        Image.fromarray(np.ascontiguousarray(img[t:t + 48, left:left + 48])).save(folder / f"hr{i}.png")
    return folder


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretraining_writes_the_network_with_its_record(hr_dir, tiny_file, tmp_path):
    out = tmp_path / "rec.safetensors"
    r = pretrain_reconstructor(hr_dir, 2, output=out, max_steps=3, established_encoder=f"sr-trunk:{tiny_file}",
                               **FAST)
    assert r.path == out and r.steps == 3 and not r.interrupted
    loaded = LRReconstructionNetwork.load(out)
    assert _equal(loaded.state_dict(), r.network.state_dict())  # the file round-trips bit-exactly
    meta = loaded.metadata
    assert meta["steps"] == 3 and meta["seed"] == 0 and meta["far_trained"] is True and meta["controller"] is True
    assert meta["hqi_distance"] == "encoder" and meta["hqi_distance_detail"].startswith("encoder:sr-trunk:")
    rec = meta["established_encoder"]
    assert rec["kind"] == "sr-trunk" and rec["model_source"] == str(tiny_file)
    assert rec["fingerprint"] == ttasr.load_model(tiny_file).weights_hash()
    assert rec["channels"] == loaded.config.far_dim == 8  # φ, ψ map to E_c's channels
    assert meta["degradation"]["name"] == "realesrgan-second-order" and meta["degradation"]["config"]["usm"] is True
    assert meta["pretrain_config"]["max_steps"] == 3 and meta["hr_images"]["images"] == 2
    # every part of the network trained (E_c is not part of it)
    torch.manual_seed(0)
    init = LRReconstructionNetwork(loaded.config)
    for part in ("degradation_encoder", "image_encoder", "reconstructor", "alignment"):
        before, after = getattr(init, part).state_dict(), getattr(loaded, part).state_dict()
        assert not _equal(before, after), part


def test_pretraining_loss_uses_the_pretraining_controller(monkeypatch, tiny_compact):
    from ttasr.methods.hraware import SRTrunkEncoder, resolve_hqi_distance

    seen = {}
    original = pretrain_module.controller

    def spy(hqi, stage, d, generator=None, **kw):
        seen["stage"], seen["hqi"] = stage, hqi
        seen["s"] = original(hqi, stage, d, generator, **kw)
        return seen["s"]

    monkeypatch.setattr(pretrain_module, "controller", spy)
    torch.manual_seed(0)
    net = LRReconstructionNetwork(scale=2, far_dim=8, **TINY_NET)
    enc = SRTrunkEncoder(tiny_compact)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 8, 8)
    loss, terms = pretrain_module.pretraining_loss(
        net, x, y, encoder=enc, distance=resolve_hqi_distance("encoder", encoder=enc),
        generator=torch.Generator().manual_seed(0), far_weight=0.5)
    assert seen["stage"] == "pretraining"
    ratio = seen["s"] / (1 - seen["hqi"])[:, None]  # s = (1 − HQI)(1 + v), |v| <= 0.1
    assert ratio.min() >= 0.9 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    assert loss.item() == pytest.approx(terms["l1"].item() + 0.5 * terms["far"].item(), rel=1e-5)


def test_pretraining_resumes_bit_exactly_after_ctrl_c(hr_dir, tiny_file, tmp_path, monkeypatch):
    cfg = dict(FAST, max_steps=6, checkpoint_every=2, checkpoint_dir=str(tmp_path / "states"),
               established_encoder=f"sr-trunk:{tiny_file}")
    full = pretrain_reconstructor(hr_dir, 2, **cfg)

    original, calls = pretrain_module.degrade_realesrgan, []

    def degrade(*args, **kwargs):  # Ctrl-C while step 4's batch is made
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "degrade_realesrgan", degrade)
    cut = pretrain_reconstructor(hr_dir, 2, output=tmp_path / "cut.safetensors", **cfg)
    assert cut.interrupted and cut.signal == signal.SIGINT and cut.steps == 4  # the step is finished
    assert cut.path is None and not (tmp_path / "cut.safetensors").exists()
    monkeypatch.setattr(pretrain_module, "degrade_realesrgan", original)
    ran: list[int] = []
    resumed = pretrain_reconstructor(hr_dir, 2, resume=True, on_step=lambda s, _loss: ran.append(s), **cfg)
    assert ran == [5, 6] and resumed.steps == 6
    assert _equal(resumed.network.state_dict(), full.network.state_dict())
    assert not list((tmp_path / "states").glob("*.safetensors"))  # the state is removed once complete


def test_presets():
    small, paper = PretrainConfig.presets()["cpu-small"](), PretrainConfig.presets()["paper"]()
    assert small.hr_patch == 64 and small.network.scale == 4 and small.established_encoder.startswith("sr-trunk:")
    assert paper.max_steps == 500_000 and paper.established_encoder == "clip-rn50" and paper.ema_decay == 0.999
    assert paper.network == ttasr.methods.hraware.ReconstructorConfig()  # the paper's network
    with pytest.raises(ttasr.InputError, match="multiple of the scale"):
        PretrainConfig(hr_patch=30)


def _cli_args(hr_dir, tiny_file, *extra):
    return ["-q", "pretrain-reconstructor", "--hr", str(hr_dir), "--scale", "2", "--max-steps", "3",
            "--batch-size", "2", "--hr-patch", "16", "--hqi-distance", "encoder", "--progress", "false",
            "--device", "cpu", "--established-encoder", f"sr-trunk:{tiny_file}", "--set", "network.embed_dim=8",
            "--network.degradation-channels", "4", "--network.degradation-blocks", "1", "--network.image-channels",
            "4", "--network.image-blocks", "1", "--network.reconstructor-channels", "4",
            "--network.reconstructor-blocks", "1", *extra]


def test_cli_pretrains_and_resumes_after_ctrl_c(hr_dir, tiny_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli.safetensors"
    states = ["--checkpoint-dir", str(tmp_path / "states")]
    original, calls = pretrain_module.degrade_realesrgan, []

    def degrade(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "degrade_realesrgan", degrade)
    assert main(_cli_args(hr_dir, tiny_file, "-o", str(out), *states)) == 130
    assert not out.exists()
    monkeypatch.setattr(pretrain_module, "degrade_realesrgan", original)
    assert main(_cli_args(hr_dir, tiny_file, "-o", str(out), "--resume", *states)) == 0
    net = LRReconstructionNetwork.load(out)
    assert net.scale == 2 and net.config.embed_dim == 8 and net.metadata["steps"] == 3
    # usage errors
    assert main(["pretrain-reconstructor", "-o", str(out)]) == 2
    assert main(["pretrain-reconstructor", "--hr", str(hr_dir)]) == 2
    assert main(["pretrain-reconstructor", "--hr", str(hr_dir), "-o", str(tmp_path / "x.pth")]) == 2
    assert main(["pretrain-reconstructor", "--hr", str(hr_dir), "-o", str(out), "--preset", "cpu-smal"]) == 2
    assert "Did you mean cpu-small" in capsys.readouterr().err


def _tiny_recipe(hr_dir, tiny_file) -> ReconstructorRecipe:
    return ReconstructorRecipe(
        "hraware-reconstructor-x2", 2, "tiny test recipe", hr=str(hr_dir),
        overrides=dict(FAST, max_steps=2, established_encoder=f"sr-trunk:{tiny_file}", encoder_layer=None))


def test_default_reconstructor_is_built_once_on_first_use(hr_dir, tiny_file, photo, monkeypatch, caplog):
    monkeypatch.setitem(reconstructors.RECONSTRUCTORS, "hraware-reconstructor-x2", _tiny_recipe(hr_dir, tiny_file))
    opts = dict(max_steps=1, batch_size=2, patch_size=16, progress=False, hqi_distance="encoder")
    path = reconstructor_path("hraware-reconstructor-x2")
    assert not path.exists()
    with caplog.at_level(logging.WARNING, logger="ttasr.methods.hraware.reconstructors"):
        first = ttasr.HRAware(tiny_file, **opts).fit(photo)
    assert "building the LR reconstruction network 'hraware-reconstructor-x2'" in caplog.text
    assert path.is_file() and LRReconstructionNetwork.load(path).metadata["steps"] == 2
    assert first.describe()["reconstructor"] == "hraware-reconstructor-x2"

    def no_build(*args, **kwargs):
        raise AssertionError("the cached reconstructor must be used")

    monkeypatch.setattr(reconstructors, "build_reconstructor", no_build)
    second = ttasr.HRAware(tiny_file, **opts).fit(photo)
    assert second.describe()["reconstructor_sha256"] == first.describe()["reconstructor_sha256"]


def test_cli_builds_the_default_reconstructor(hr_dir, tiny_file, monkeypatch):
    monkeypatch.setitem(reconstructors.RECONSTRUCTORS, "hraware-reconstructor-x2", _tiny_recipe(hr_dir, tiny_file))
    assert main(["-q", "pretrain-reconstructor", "--default", "hraware-reconstructor-x2", "--max-steps", "1"]) == 0
    net = LRReconstructionNetwork.load(reconstructor_path("hraware-reconstructor-x2"))
    assert net.metadata["steps"] == 1 and net.metadata["hr_images"]["source"] == str(hr_dir)
    assert main(["pretrain-reconstructor", "--default", "hraware-reconstructor-x3"]) == 2
