"""`benchmarks/gpu.py --smoke` runs on the CPU and prints every table (its figures are not
asserted: speed targets live in the benchmark, not in unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_prints_its_tables_and_saves_every_row(tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for header in ("| model | dtype | bare s |", "| model | setting | bare step s |",
                   "| model | workers | images |"):
        assert header in proc.stdout
    saved = json.loads((out / "results.json").read_text())
    assert saved["device"] == "cpu"
    sections = [r["section"] for r in saved["rows"]]
    assert sections.count("enhance") == 1 and sections.count("step") == 1 and sections.count("images") == 2
    assert all(r["amortised_step_s"] > 0 and r["s_per_image_1500"] > 0 for r in saved["rows"] if r["section"] == "images")
    assert all(r["adassr_step_s"] > 0 for r in saved["rows"] if r["section"] == "step")
