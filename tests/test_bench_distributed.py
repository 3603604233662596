"""``ttasr bench`` under torchrun: 2 CPU processes (gloo) merge to the single-process results,
multi-image rows included (each rank adapts its own units, never in DDP with the other's)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ttasr.cli import main

SETS = ["--set", "internal.max_steps=2", "--set", "internal.batch_size=2", "--set", "internal.patch_size=12",
        "--set", "internal.stopping=fixed"]
MULTI = ["--variant", "camera=internal", *[kv.replace("internal.", "camera.") for kv in SETS],
         "--set", "camera.mode=multi", "--set", "camera.lr=0.01"]
"""A multi-image row: one adaptation per seed over all images; with 2 seeds, one unit per rank."""


@pytest.fixture
def paired(tmp_path) -> Path:
    """Three 40x40 HR PNGs and their 20x20 LR (2x box downscale), as paired:ROOT."""
    rng = np.random.default_rng(0)
    root = tmp_path / "set"
    (root / "HR").mkdir(parents=True)
    (root / "LR").mkdir()
    for i in range(3):
        hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        lr = hr.reshape(20, 2, 20, 2, 3).mean((1, 3)).round().astype(np.uint8)
        Image.fromarray(hr).save(root / "HR" / f"im{i}.png")
        Image.fromarray(lr).save(root / "LR" / f"im{i}.png")
    return root


def bench_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["-q", "bench", "--method", "internal", "-m", str(model), "--dataset", f"paired:{data}",
            "--seeds", "0,1", "--metrics", "psnr,ssim", "-o", str(out), *SETS]


def merged(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}


def test_bench_command_writes_results_and_tables(tiny_file, paired, tmp_path):
    out = tmp_path / "out"
    assert main(bench_args(tiny_file, paired, out)) == 0
    records = merged(out)
    assert len(records) == 3 * (1 + 2)
    assert {r["method"] for r in records.values()} == {"unadapted", "internal"}
    assert all(r["status"] == "ok" and set(r["metrics"]) == {"psnr_y", "ssim_y"} for r in records.values())
    assert all(r["steps"] == 2 for r in records.values() if r["method"] == "internal")  # --set applied
    assert (out / "results.md").is_file() and (out / "timing.csv").is_file()
    # a rerun without --resume refuses the folder; with it, nothing is redone
    assert main(bench_args(tiny_file, paired, out)) == 1
    before = (out / "results-rank0.jsonl").read_text()
    assert main([*bench_args(tiny_file, paired, out), "--resume"]) == 0
    assert (out / "results-rank0.jsonl").read_text() == before
    assert main([*bench_args(tiny_file, paired, out)[:-8], "--set", "nomethod.max_steps=1"]) == 2


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_gloo_ranks_merge_to_the_single_process_results(tiny_file, paired, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TTASR_OFFLINE": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = [sys.executable, "-m", "ttasr.cli"]
    subprocess.run([*cmd, *bench_args(tiny_file, paired, one), *MULTI], env=env, check=True, timeout=600)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run([*torchrun, "-m", "ttasr.cli", *bench_args(tiny_file, paired, two), *MULTI], env=env,
                            timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    assert (two / "results-rank0.jsonl").is_file() and (two / "results-rank1.jsonl").is_file()
    a, b = merged(one), merged(two)
    assert sorted(a) == sorted(b) and len(a) == 15
    multi = [r for r in b.values() if r["method"] == "camera"]
    assert len(multi) == 6 and {r["rank"] for r in multi} == {0, 1}  # one seed's adaptation per rank
    assert {r["rank"] for r in b.values()} == {0, 1} and {r["world"] for r in b.values()} == {2}
    for key in a:
        for metric, value in a[key]["metrics"].items():
            assert b[key]["metrics"][metric] == pytest.approx(value, abs=1e-6), (key, metric)
    assert (two / "results.md").is_file()  # rank 0 wrote the tables after the barrier
