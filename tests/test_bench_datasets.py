"""Benchmark datasets: layouts found, pairs checked, problems recorded, proxies reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ttasr.bench.proxy as proxy_module
from ttasr.bench import (
    BenchDataset,
    build_proxy,
    load_dataset,
    load_drealsr,
    load_lr_only,
    load_paired,
    load_realsr,
    parse_spec,
)
from ttasr.bench._scan import probe_size
from ttasr.errors import InputError

RNG = np.random.default_rng(0)


def png(path: Path, height: int, width: int) -> np.ndarray:
    """Write a random RGB PNG of ``height x width`` and return its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")


def kinds(data: BenchDataset) -> dict[str, str]:
    """``{file name: problem kind}``."""
    return {p.path.name: p.kind for p in data.problems}


# ---------------------------------------------------------------------------- RealSR v3
@pytest.fixture
def realsr(tmp_path):
    """A RealSR v3 copy, unpacked into ``RealSR(V3)/``, with one problem of each kind."""
    base = tmp_path / "RealSR(V3)"
    canon, nikon = base / "Canon" / "Test" / "4", base / "Nikon" / "Test" / "4"
    pixels = {"hr": png(canon / "Canon_001_HR.png", 32, 32), "lr": png(canon / "Canon_001_LR4.png", 8, 8)}
    png(canon / "Canon_002_HR.png", 32, 48)
    png(canon / "Canon_002_LR4.png", 8, 12)
    png(canon / "Canon_003_HR.png", 32, 32)
    png(canon / "Canon_003_LR4.png", 8, 9)  # mismatched size
    (canon / "._Canon_001_HR.png").write_bytes(b"macOS resource fork")  # hidden: ignored
    png(nikon / "Nikon_001_HR.png", 32, 32)
    png(nikon / "Nikon_001_LR4.png", 8, 8)
    png(nikon / "Nikon_002_HR.png", 32, 32)  # no LR
    png(nikon / "Nikon_003_HR.png", 32, 32)
    garbage(nikon / "Nikon_003_LR4.png")  # unreadable
    png(base / "Canon" / "Test" / "2" / "Canon_001_HR.png", 16, 16)  # another scale: not scanned
    return tmp_path, pixels


def test_realsr_finds_pairs_and_records_each_problem(realsr):
    root, pixels = realsr
    data = load_realsr(root, 4)  # the folder holding RealSR(V3)/
    assert [item.name for item in data] == ["Canon_001", "Canon_002", "Nikon_001"]
    assert data.name == "realsr" and data.scale == 4 and data.paired
    assert kinds(data) == {"Canon_003_HR.png": "size", "Nikon_002_HR.png": "missing",
                           "Nikon_003_LR4.png": "unreadable"}
    first = data[0]
    assert first.lr_size == (8, 8) and first.hr_size == (32, 32)
    assert first.info == {"camera": "Canon", "split": "Test"}
    assert data[1].lr_size == (8, 12) and data[1].hr_size == (32, 48)
    lr, hr = first.load_lr(), first.load_hr()
    assert lr.shape == (1, 3, 8, 8) and hr.shape == (1, 3, 32, 32)
    assert torch.equal(lr, torch.from_numpy(pixels["lr"]).permute(2, 0, 1)[None].float() / 255)
    assert torch.equal(hr, torch.from_numpy(pixels["hr"]).permute(2, 0, 1)[None].float() / 255)
    size = next(p for p in data.problems if p.kind == "size")
    assert "32x32" in size.reason and "8x9" in size.reason and "\n" not in size.reason
    assert data.summary() == "realsr x4: 3 images, 3 with HR, 3 problems"
    assert data.describe_problems().count("\n") == 2


def test_realsr_options_and_layout_errors(realsr):
    root, _ = realsr
    canon = load_realsr(root / "RealSR(V3)", 4, cameras=("Canon",))
    assert canon.name == "realsr-canon" and [i.name for i in canon] == ["Canon_001", "Canon_002"]
    with pytest.raises(InputError, match="Did you mean Nikon"):
        load_realsr(root, 4, cameras=("Nikkon",))
    with pytest.raises(InputError, match="Did you mean test"):
        load_realsr(root, 4, split="tset")
    with pytest.raises(InputError, match="does not look like RealSR v3"):
        load_realsr(root, 3)
    partial = load_realsr(root, 2)  # Canon has x2, Nikon not: one layout problem, no exception
    assert [p.kind for p in partial.problems] == ["missing", "layout"]


def test_realsr_same_size_lr_and_mod_crop(tmp_path):
    folder = tmp_path / "Canon" / "Test" / "4"
    png(folder / "Canon_001_HR.png", 32, 32)
    png(folder / "Canon_001_LR4.png", 32, 32)  # v1/v2: LR upsampled to the HR's size
    png(folder / "Canon_002_HR.png", 34, 35)  # not divisible by 4
    png(folder / "Canon_002_LR4.png", 8, 8)
    strict = load_realsr(tmp_path, 4, cameras=("Canon",))
    assert len(strict) == 0
    reasons = {p.path.name: p.reason for p in strict.problems}
    assert "RealSR v1/v2" in reasons["Canon_001_HR.png"]
    assert "mod_crop=True" in reasons["Canon_002_HR.png"]
    cropped = load_realsr(tmp_path, 4, cameras=("Canon",), mod_crop=True)
    assert [i.name for i in cropped] == ["Canon_002"]
    assert cropped[0].hr_size == (32, 32) and cropped[0].load_hr().shape == (1, 3, 32, 32)


# ---------------------------------------------------------------------------- DRealSR
@pytest.fixture
def drealsr(tmp_path):
    test = tmp_path / "DRealSR" / "Test_x4"
    png(test / "test_HR" / "DSC_1454_x1.png", 32, 32)
    png(test / "test_LR" / "DSC_1454_x4.png", 8, 8)
    png(test / "test_HR" / "sony_5_x4.png", 32, 16)  # the other suffix convention in circulation
    png(test / "test_LR" / "sony_5_x1.png", 8, 4)
    png(test / "test_HR" / "DSC_1500_x1.png", 32, 32)  # no LR
    png(test / "test_HR" / "DSC_1600_x1.png", 32, 32)
    png(test / "test_LR" / "DSC_1600_x4.png", 16, 16)  # mismatched
    return tmp_path / "DRealSR"


def test_drealsr_pairs_by_scene_whatever_the_suffix(drealsr):
    data = load_drealsr(drealsr, 4)
    assert data.name == "drealsr"
    assert [(i.name, i.lr_size, i.hr_size) for i in data] == [
        ("DSC_1454", (8, 8), (32, 32)), ("sony_5", (8, 4), (32, 16))]
    assert kinds(data) == {"DSC_1500_x1.png": "missing", "DSC_1600_x1.png": "size"}
    direct = load_drealsr(drealsr / "Test_x4", 4)  # the scale folder itself
    assert [i.name for i in direct] == ["DSC_1454", "sony_5"]
    with pytest.raises(InputError, match="x4 pairs but scale 2"):
        load_drealsr(drealsr / "Test_x4", 2)
    with pytest.raises(InputError, match="Test_x2/test_HR"):
        load_drealsr(drealsr, 2)


# ---------------------------------------------------------------------------- folders
def test_paired_folders_default_key_matches_common_suffixes(tmp_path):
    png(tmp_path / "set" / "HR" / "0801.png", 16, 16)
    png(tmp_path / "set" / "LR" / "0801x4.png", 4, 4)
    png(tmp_path / "set" / "HR" / "baby_HR.png", 16, 8)
    png(tmp_path / "set" / "LR" / "baby_LR4.png", 4, 2)
    png(tmp_path / "set" / "HR" / "bird_GT.png", 16, 16)
    png(tmp_path / "set" / "LR" / "bird_lq_x4.png", 4, 4)
    png(tmp_path / "set" / "LR" / "lonely.png", 4, 4)
    data = load_paired(tmp_path / "set", scale=4)
    assert data.name == "set" and [i.name for i in data] == ["0801", "baby", "bird"]
    assert kinds(data) == {"lonely.png": "missing"}
    two = load_paired(tmp_path / "set" / "HR", tmp_path / "set" / "LR", 4, name="mine")
    assert two.name == "mine" and len(two) == 3


def test_paired_folders_custom_key_and_clashes(tmp_path):
    png(tmp_path / "hr" / "img01_final.png", 8, 8)
    png(tmp_path / "hr" / "img01_draft.png", 8, 8)  # same key as img01_final: a name problem
    png(tmp_path / "hr" / "photo.png", 8, 8)  # no match for the pattern
    png(tmp_path / "lr" / "img01-low.png", 4, 4)
    data = load_paired(tmp_path / "hr", tmp_path / "lr", 2, key=r"^img(?P<key>\d+)")
    assert [i.name for i in data] == ["01"]
    assert kinds(data) == {"img01_final.png": "name", "photo.png": "name"}  # sorted: draft came first
    with pytest.raises(InputError, match="has no HR/"):
        load_paired(tmp_path / "hr", scale=2)


def test_lr_only_items_have_no_reference(tmp_path):
    png(tmp_path / "lr" / "a.png", 6, 7)
    png(tmp_path / "lr" / "b.png", 5, 5)
    garbage(tmp_path / "lr" / "c.png")
    (tmp_path / "lr" / "notes.txt").write_text("not an image suffix: not scanned")
    data = load_lr_only(tmp_path / "lr", 4)
    assert [(i.name, i.lr_size, i.has_hr) for i in data] == [("a", (6, 7), False), ("b", (5, 5), False)]
    assert kinds(data) == {"c.png": "unreadable"} and not data.paired
    assert data[0].load_lr().shape == (1, 3, 6, 7)
    with pytest.raises(InputError, match="no HR reference"):
        data[0].load_hr()
    assert len(data.head(1)) == 1 and data.head(1).problems == data.problems


def test_probe_size_turns_by_exif_orientation(tmp_path):
    from ttasr.io import load_images

    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    Image.fromarray(RNG.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(path, exif=exif)
    assert probe_size(path, None) == (16, 8) == tuple(load_images(path).records[0].rgb.shape[-2:])


# ---------------------------------------------------------------------------- proxy
@pytest.fixture
def photos(tmp_path):
    png(tmp_path / "photos" / "one.png", 40, 44)
    png(tmp_path / "photos" / "two.png", 36, 36)
    png(tmp_path / "photos" / "tiny.png", 16, 16)  # smaller than the crop
    return tmp_path / "photos"


def test_proxy_is_deterministic_per_seed(photos):
    first = build_proxy("camera", photos, scale=4, crop=32, seed=0, cache=False)
    again = build_proxy("camera", photos, scale=4, crop=32, seed=0, cache=False)
    other = build_proxy("camera", photos, scale=4, crop=32, seed=1, cache=False)
    assert first.name == "proxy-camera" and [i.name for i in first] == ["one", "two"]
    assert kinds(first) == {"tiny.png": "size"}
    for a, b, c in zip(first, again, other):
        assert a.load_hr().shape == (1, 3, 32, 32) and a.load_lr().shape == (1, 3, 8, 8)
        assert a.lr_size == (8, 8) and a.hr_size == (32, 32)
        assert torch.equal(a.load_lr(), b.load_lr()) and torch.equal(a.load_hr(), b.load_hr())
        assert torch.equal(a.load_hr(), c.load_hr()) and not torch.equal(a.load_lr(), c.load_lr())
    assert first[0].info["seed"] == first[1].info["seed"] == 0  # one camera for the set
    assert first[0].info["kernel"].shape[0] % 2 == 1 and first[0].info["params"]["jpeg_quality"] == 95
    per_image = build_proxy("camera", photos, scale=4, crop=32, seed=5, per_image_seed=True, cache=False)
    assert [i.info["seed"] for i in per_image] == [5, 7]  # by place among the photos: tiny.png is 6


def test_proxy_cache_is_reused_and_identical(photos, tmp_path, monkeypatch):
    memory = build_proxy("sensor-noise", photos, scale=2, crop=32, seed=3, cache=False, limit=1)
    cached = build_proxy("sensor-noise", photos, scale=2, crop=32, seed=3, cache=tmp_path / "cache", limit=1)
    assert isinstance(cached[0].lr, Path) and (cached.root / "manifest.json").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("the cached set was built again")

    monkeypatch.setattr(proxy_module, "degrade", fail)
    reread = build_proxy("sensor-noise", photos, scale=2, crop=32, seed=3, cache=tmp_path / "cache", limit=1)
    assert len(memory) == len(reread) == 1 and reread[0].lr_size == (16, 16)
    assert torch.equal(memory[0].load_lr(), reread[0].load_lr())
    assert torch.equal(memory[0].load_hr(), reread[0].load_hr())
    assert torch.equal(memory[0].info["kernel"], reread[0].info["kernel"])
    assert reread[0].info["params"] == memory[0].info["params"]
    with pytest.raises(AssertionError, match="built again"):  # another seed is another set
        build_proxy("sensor-noise", photos, scale=2, crop=32, seed=4, cache=tmp_path / "cache", limit=1)


def test_proxy_argument_errors(photos):
    with pytest.raises(InputError, match="Did you mean camera"):
        build_proxy("camra", photos, cache=False)
    with pytest.raises(InputError, match="multiple of the scale 3"):
        build_proxy("camera", photos, scale=3, crop=32, cache=False)
    with pytest.raises(InputError, match="no photo could be used"):
        build_proxy("camera", photos / "tiny.png", scale=4, crop=32, cache=False)


# ---------------------------------------------------------------------------- specs
def test_load_dataset_specs(realsr, drealsr, photos, tmp_path):
    root, _ = realsr
    assert [i.name for i in load_dataset(f"realsr:{root}", scale=4, cameras="Canon")] == ["Canon_001", "Canon_002"]
    assert len(load_dataset(f"drealsr:{drealsr}")) == 2
    png(tmp_path / "p" / "HR" / "x.png", 8, 8)
    png(tmp_path / "p" / "LR" / "x.png", 4, 4)
    assert len(load_dataset(f"paired:{tmp_path / 'p'}", scale=2)) == 1
    assert len(load_dataset(f"paired:{tmp_path / 'p' / 'HR'},{tmp_path / 'p' / 'LR'}", scale=2)) == 1
    assert not load_dataset(f"lr:{tmp_path / 'p' / 'LR'}").paired
    proxy = load_dataset(f"proxy:optical-blur:{photos}", scale=4, crop="32", cache="false", limit="1")
    assert proxy.name == "proxy-optical-blur" and proxy[0].lr_size == (8, 8)
    assert parse_spec("DRealSR:/x") == ("drealsr", "/x")


def test_load_dataset_errors():
    with pytest.raises(InputError, match="Did you mean realsr"):
        load_dataset("realsrr:/data")
    with pytest.raises(InputError, match="has no kind"):
        load_dataset("/data/photos")
    with pytest.raises(InputError, match="lacks its argument"):
        load_dataset("proxy:")
    with pytest.raises(InputError, match="Did you mean cameras"):
        load_dataset("realsr:/data", camera="Canon")
    with pytest.raises(InputError, match="Did you mean camera"):
        load_dataset("proxy:camra")
    with pytest.raises(InputError, match="use true or false"):
        load_dataset("realsr:/data", mod_crop="maybe")
