"""Crops kept by ``run_bench`` and the self-contained ``report.html`` (checked in headless
Chromium when one is installed)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ttasr
from ttasr.bench import BenchDataset, BenchItem, read_results, run_bench, write_report, write_tables
from ttasr.bench.plots import write_plots
from ttasr.bench.report import markdown_to_html
from ttasr.bench.crops import _bicubic_crop, crop_boxes
from ttasr.bench.runner import UNADAPTED
from ttasr.cli import main

FAST = {"max_steps": 2, "batch_size": 2, "patch_size": 12, "stopping": "fixed"}
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def toy_dataset(n: int = 2, size: int = 40, lr_only: int = 0) -> BenchDataset:
    """``n`` random HR images and their 2x box-downscaled LR; the last ``lr_only`` have no HR."""
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        hr = torch.rand(1, 3, size, size, generator=g)
        keep = i < n - lr_only
        items.append(BenchItem(name=f"im{i}", lr=F.avg_pool2d(hr, 2), hr=hr if keep else None, scale=2,
                               dataset="toy", lr_size=(size // 2, size // 2), hr_size=(size, size) if keep else None))
    return BenchDataset("toy", 2, items)


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def eight_bit(t: torch.Tensor) -> np.ndarray:
    return (t[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------- crop choice
def test_crop_boxes_pick_the_textured_windows_without_overlap():
    lr = torch.full((1, 3, 48, 48), 0.5)
    lr[..., 30:46, 4:20] = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # texture
    lr[..., 0:16, 30:46] += 0.05 * torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    boxes = crop_boxes(lr, scale=2, count=3, size=32)  # 16-pixel LR windows
    assert [b[2] for b in boxes] == [16, 16, 16]
    top, left, _ = boxes[0]
    assert 22 <= top <= 32 and 0 <= left <= 8  # covers most of the noisy patch
    for i, (t, l_, s) in enumerate(boxes):
        for t2, l2, _ in boxes[i + 1:]:
            assert t >= t2 + s or t2 >= t + s or l_ >= l2 + s or l2 >= l_ + s
    strip = crop_boxes(lr[..., :10, :], scale=4, count=5)  # 128 / 4 = 32, capped by the short side
    assert 1 <= len(strip) <= 4 and all(s == 10 and t == 0 for t, _, s in strip)
    assert crop_boxes(lr, scale=2, count=0) == []


@pytest.mark.parametrize("box", [(0, 0, 8), (5, 7, 8), (12, 12, 8)])
def test_bicubic_crop_equals_the_same_part_of_the_whole_upsampled_image(box):
    lr = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    whole = F.interpolate(lr, scale_factor=3, mode="bicubic", align_corners=False).clamp(0, 1)
    top, left, side = box
    expected = whole[..., top * 3:(top + side) * 3, left * 3:(left + side) * 3]
    assert torch.allclose(_bicubic_crop(lr, 3, top, left, side), expected, atol=1e-6)


# ---------------------------------------------------------------------------- crops in the runner
def test_run_bench_keeps_crops_and_a_resume_does_not_redo_them(tiny_compact, tmp_path):
    models = {"tiny": tiny_compact}
    data = toy_dataset(2, lr_only=1)
    kwargs = {"metrics": ("psnr_y",), "method_overrides": {"internal": FAST}}
    run_bench(["internal"], models, [data], [0], tmp_path, **kwargs)
    path = tmp_path / "results-rank0.jsonl"
    records = {r["key"]: r for r in read_results(path)}
    assert len(records) == 4 and all(len(r["crops"]) == 1 for r in records.values())

    # the unadapted crop is the SR output's window, as 8-bit PNG; 20-px LR: the whole 40-px image
    unadapted = records[f"toy|im0|tiny|{UNADAPTED}|-"]["crops"][0]
    assert unadapted["box"] == [0, 0, 40, 40]
    sr = ttasr.enhance(tiny_compact, data[0].load_lr())
    assert np.array_equal(png(tmp_path / unadapted["sr"]), eight_bit(sr))
    assert np.array_equal(png(tmp_path / unadapted["hr"]), eight_bit(data[0].load_hr()))
    bicubic = F.interpolate(data[0].load_lr(), scale_factor=2, mode="bicubic", align_corners=False)
    assert np.abs(png(tmp_path / unadapted["bicubic"]).astype(int) - eight_bit(bicubic.clamp(0, 1))).max() <= 1
    from ttasr.metrics.fidelity import psnr_y

    assert unadapted["psnr_y"]["sr"] == pytest.approx(psnr_y(sr, data[0].load_hr()), abs=1e-9)

    # bicubic and HR are shared by the methods of an item; each job has its own SR crop
    adapted = records["toy|im0|tiny|internal|0"]["crops"][0]
    assert (adapted["bicubic"], adapted["hr"]) == (unadapted["bicubic"], unadapted["hr"])
    assert adapted["sr"] != unadapted["sr"]
    lr_only = records[f"toy|im1|tiny|{UNADAPTED}|-"]["crops"][0]
    assert "hr" not in lr_only and "psnr_y" not in lr_only and (tmp_path / lr_only["bicubic"]).is_file()
    files = sorted((tmp_path / "crops").iterdir())
    assert len(files) == 4 + 2 + 1  # 4 jobs, bicubic x 2 items, HR x 1

    # resume: only the dropped job writes its crop again
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    lines = path.read_text().splitlines()
    dropped = json.loads(lines.pop(1))
    path.write_text("".join(line + "\n" for line in lines))
    for p in files:
        p.touch()
        stamps[p.name] = p.stat().st_mtime_ns
    again = run_bench(["internal"], models, [data], [0], tmp_path, **kwargs)
    assert (again.done, again.skipped) == (1, 3)
    changed = {p.name for p in (tmp_path / "crops").iterdir() if p.stat().st_mtime_ns != stamps.get(p.name)}
    assert changed == {Path(dropped["crops"][0]["sr"]).name}


def test_keep_crops_zero_keeps_none(tiny_compact, tmp_path):
    run_bench([UNADAPTED], {"tiny": tiny_compact}, [toy_dataset(1)], [0], tmp_path, metrics=("psnr_y",),
              keep_crops=0)
    [record] = read_results(tmp_path / "results-rank0.jsonl")
    assert "crops" not in record and not (tmp_path / "crops").exists()


# ---------------------------------------------------------------------------- the page
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "table":
            self.tables += 1
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]


@pytest.fixture
def bench_out(tiny_compact, tmp_path) -> Path:
    out = tmp_path / "out"
    run_bench(["internal"], {"tiny": tiny_compact}, [toy_dataset(2, lr_only=1)], [0, 1], out,
              metrics=("psnr_y", "ssim_y"), method_overrides={"internal": FAST})
    write_tables(out)
    write_plots(out)  # none without matplotlib: the page then says so
    return out


def test_report_is_self_contained_with_every_crop_and_the_tables(bench_out):
    page = write_report(bench_out).read_text(encoding="utf-8")
    links = _Links()
    links.feed(page)
    assert links.urls and all(u.startswith("data:image/png;base64,") for u in links.urls)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    records = [r for r in read_results(bench_out / "results.jsonl")]
    crops = {c[v] for r in records for c in r["crops"] for v in ("sr", "bicubic", "hr") if v in c}
    assert len(crops) == 6 + 2 + 1  # 6 jobs, bicubic x 2 items, HR x 1
    embedded = set(links.images)
    for rel in crops:
        assert "data:image/png;base64," + base64.b64encode((bench_out / rel).read_bytes()).decode() in embedded
    # im0: bicubic, unadapted, 2 seeds, HR; im1 (no HR): the same without HR
    assert len(links.images) == 5 + 4 + len([p for p in bench_out.glob("*.png")])
    assert links.tables == 3  # results, per image, timing
    assert "toy: psnr_y ↑" in page and "s/image (adapt)" in page
    assert "internal (seed 1)" in page and "crop PSNR-Y" in page


def test_markdown_tables_keep_escaped_bars_and_escape_html():
    text = "| a | b |\n| --- | --- |\n| x \\| y | <b> |\n\nnote & more\n- item"
    assert markdown_to_html(text) == ("<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody>"
                                      "<tr><td>x | y</td><td>&lt;b&gt;</td></tr></tbody></table>\n"
                                      "<p>note &amp; more</p>\n<ul><li>item</li></ul>")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (chromium, chromium-browser or google-chrome) on PATH; "
                                             "apt-get install chromium to run this check")
def test_report_renders_with_its_images_decoded_in_headless_chromium(bench_out, tmp_path):
    report = write_report(bench_out)
    expected = report.read_text(encoding="utf-8").count("<img ")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--run-all-compositor-stages-before-draw",
         "--virtual-time-budget=5000", "--dump-dom", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, result.stdout[:500]
    found = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(1)))
    assert int(found["images"]) == expected >= 9
    assert int(found["images-loaded"]) == expected  # every embedded PNG decoded
    assert result.stdout.count("<img ") == expected


# ---------------------------------------------------------------------------- the command
def test_bench_command_writes_the_report_unless_told_not_to(tiny_file, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "set"
    (root / "HR").mkdir(parents=True)
    (root / "LR").mkdir()
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(hr).save(root / "HR" / "im0.png")
    Image.fromarray(hr.reshape(20, 2, 20, 2, 3).mean((1, 3)).round().astype(np.uint8)).save(root / "LR" / "im0.png")
    args = ["-q", "bench", "-m", str(tiny_file), "--dataset", f"paired:{root}", "--metrics", "psnr"]

    assert main([*args, "-o", str(tmp_path / "a"), "--crops", "2"]) == 0
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    [record] = read_results(tmp_path / "a" / "results.jsonl")
    assert len(record["crops"]) == 1  # a 20-pixel LR holds one window
    assert page.count("<img ") >= 3  # bicubic, unadapted, HR

    assert main([*args, "-o", str(tmp_path / "b"), "--no-report", "--crops", "0"]) == 0
    assert not (tmp_path / "b" / "report.html").exists() and not (tmp_path / "b" / "crops").exists()
    with pytest.raises(SystemExit) as exit_:
        main([*args, "-o", str(tmp_path / "c"), "--crops", "-1"])
    assert exit_.value.code == 2
