"""`benchmarks/hraware_checks.py --smoke` runs the three HR-aware paper checks (Figs. 7-9) with
tiny networks, prints their tables and saves finite figures; each check keeps the others'
results. The paper's claims themselves need the real reconstructor and are not asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "hraware_checks.py"
# read at collection, before conftest points TTASR_HOME at a fresh folder for each test
_NIQE = Path(os.environ.get("TTASR_HOME", Path.home() / ".cache" / "ttasr")).expanduser() / "metrics" / \
    "niqe_modelparameters.mat"


def _finite(*values: object) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_smoke_prints_the_three_tables_and_saves_finite_figures(tmp_path):
    out = tmp_path / "checks"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--out", str(out)]
    if _NIQE.is_file():
        cmd += ["--niqe-params", str(_NIQE)]
    env = {**os.environ, "TTASR_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for header in ("## fig7: LR reconstruction PSNR", "slope", "rising",
                   "## fig8: FAR (eq. 11", "mean FAR", "> clean",
                   "## fig9: smoke:tiny-span-x4 finetuned 4 steps", "### preset 'camera'", "unadapted", "last-peak"):
        assert header in text, header
    assert "s = HQI (controller, finetuning eq. 8)" in text and "s = 1 (no controller)" in text
    for row in ("PSNR-Y  hraware", "PSNR-Y  lway", "SSIM-Y  hraware", "loss    lway"):
        assert row in text, row

    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"fig7", "fig8", "fig9"}

    f7 = saved["fig7"]
    assert f7["config"]["t"] == [0, 0.25, 0.5, 0.75, 1] and len(f7["images"]) == 3
    assert set(f7["rows"]) == {"s = 1 (no controller)", "s = HQI (controller, finetuning eq. 8)",
                               "s = 1 - HQI (pretraining form)"}
    for row in f7["rows"].values():
        assert len(row["mean"]) == 5 and _finite(*row["mean"], row["slope"], row["images_rising"])
        assert len(row["psnr"]) == 3 and all(_finite(*per) for per in row["psnr"])
    assert _finite(*f7["hqi_mean"]) and all(0 <= h <= 1 for h in f7["hqi_mean"])
    assert f7["hqi_mean"][-1] == 1.0  # x_1 = Up(y): no distance to Up(y)
    assert f7["reconstructor"]["established_encoder"].startswith("sr-trunk:")

    f8 = saved["fig8"]
    assert set(f8["conditions"]) == {"clean", "blur", "noise", "jpeg"}
    for cond in f8["conditions"].values():
        assert len(cond["far"]) == 3 and _finite(*cond["far"], cond["mean"], cond["ratio_to_clean"])
        assert 0 <= cond["fraction_above_clean"] <= 1
    assert f8["conditions"]["clean"]["ratio_to_clean"] == 1.0

    f9 = saved["fig9"]
    assert f9["settings"]["steps"] == 4 and f9["settings"]["eval_every"] == 2
    rows = f9["presets"]["camera"]
    assert set(rows) == {"unadapted", "hraware", "lway"}
    assert len(rows["unadapted"]["psnr"]) == 2 and _finite(*rows["unadapted"]["psnr"], *rows["unadapted"]["ssim"])
    niqe_ok = f9["niqe"] == "available"
    assert niqe_ok or f9["niqe"].startswith("unavailable")
    for method in ("hraware", "lway"):
        run = rows[method]
        assert [r["step"] for r in run["records"]] == [2, 4]
        for rec in run["records"]:
            assert _finite(*rec["psnr"], *rec["ssim"], rec["loss"])
            assert (_finite(*rec["niqe"]) if niqe_ok else rec["niqe"] is None)
        assert _finite(run["sec_per_step"], run["sec_per_eval"]) and run["sec_per_step"] > 0
        assert run["lr"] == rows["hraware"]["lr"]  # the paper's Fig. 9: the same learning rate


@pytest.fixture
def module(monkeypatch):
    """The script imported as a module (it puts benchmarks/ on sys.path: restored afterwards)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("hraware_checks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_check_replaces_only_its_own_results(tmp_path, module):
    module.store(tmp_path, "fig7", {"a": 1})
    module.store(tmp_path, "fig9", {"b": 2})
    module.store(tmp_path, "fig7", {"a": 3})
    assert module.read_results(tmp_path) == {"fig7": {"a": 3}, "fig9": {"b": 2}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.json.lock"]  # no .part left


def _fig9(settings: dict, sha: str, presets: dict) -> dict:
    return {"settings": settings, "photos": ["a", "b"], "niqe": "available",
            "reconstructor": {"sha256": sha}, "presets": presets}


def _run(psnr: float) -> dict:
    return {"records": [{"step": 2, "psnr": [psnr, psnr], "ssim": [0.5, 0.5], "niqe": [5.0, 5.0], "loss": 0.1}],
            "sec_per_step": 1.0, "sec_per_eval": 1.0, "lr": 5e-5, "ema_decay": 0.999}


def test_report_merges_fig9_runs_of_parallel_folders_and_refuses_other_settings(tmp_path, capsys, module):
    unadapted = {"psnr": [30.0, 32.0], "ssim": [0.5, 0.5], "niqe": [5.0, 5.0]}
    settings = {"model": "span-x4", "steps": 2, "eval_every": 2, "size": 512}
    a, b, c, d = (tmp_path / n for n in "abcd")
    module.store(a, "fig9", _fig9(settings, "s1", {"camera": {"unadapted": unadapted, "hraware": _run(30.5)}}))
    module.store(b, "fig9", _fig9(settings, "s1", {"camera": {"unadapted": unadapted, "lway": _run(29.0)},
                                                   "jpeg-heavy": {"unadapted": unadapted, "lway": _run(31.5)}}))
    module.store(c, "fig9", _fig9({**settings, "steps": 4}, "s1", {"camera": {"unadapted": unadapted}}))
    module.store(d, "fig9", _fig9(settings, "s2", {"camera": {"unadapted": unadapted}}))

    module.main(["fig9", "--report", "--out", str(a), "--merge", str(b)])
    text = "\n".join(" ".join(line.split()) for line in capsys.readouterr().out.splitlines())
    camera = text.split("### preset 'camera'")[1].split("### preset")[0]
    assert "PSNR-Y hraware 31.0000 30.500" in camera and "PSNR-Y lway 31.0000 29.000" in camera
    assert "### preset 'jpeg-heavy'" in text and "PSNR-Y lway 31.0000 31.500" in text
    assert "lway: keeps step 0, stops at 2; PSNR-Y +0.000 dB" in camera  # NIQE 5.0 never falls
    assert set(module.read_results(a)["fig9"]["presets"]["camera"]) == {"unadapted", "hraware"}  # nothing written

    with pytest.raises(SystemExit, match="settings"):
        module.main(["fig9", "--report", "--out", str(a), "--merge", str(c)])
    with pytest.raises(SystemExit, match="another reconstructor"):
        module.main(["fig9", "--report", "--out", str(a), "--merge", str(d)])
    with pytest.raises(SystemExit):  # argparse: --merge without --report
        module.main(["fig9", "--out", str(a), "--merge", str(b)])


def test_the_replayed_niqe_rule_keeps_the_lowest_score_until_its_plateau(module):
    # falls twice, then rises three times in a row: keeps index 2, stops at the third rise
    assert module.niqe_rule_pick([7.0, 6.8, 6.4, 6.9, 8.6, 11.5, 14.1]) == (2, 5)
    # keeps falling by more than 0.05: never stops, keeps the last
    assert module.niqe_rule_pick([7.0, 6.9, 6.8, 6.7]) == (3, 3)
    # only rises: the unadapted weights win
    assert module.niqe_rule_pick([5.0, 5.2, 5.4, 5.6, 5.8]) == (0, 3)
    # small decreases count as a plateau, but the lowest still wins
    assert module.niqe_rule_pick([5.0, 4.98, 4.97, 4.96]) == (3, 3)


def test_fig9_blend_scores_the_start_at_0_and_the_scored_weights_at_1(tmp_path):
    # a high learning rate and no EMA, so that 4 steps move the tiny model visibly
    out = tmp_path / "blend"
    cmd = [sys.executable, str(SCRIPT), "fig9", "--smoke", "--methods", "hraware", "--ema", "none", "--lr", "0.01",
           "--blend", "0,0.5,1", "--out", str(out)]
    if _NIQE.is_file():
        cmd += ["--niqe-params", str(_NIQE)]
    env = {**os.environ, "TTASR_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    f9 = json.loads((out / "results.json").read_text())["fig9"]
    assert f9["settings"]["blend"] == [0.0, 0.5, 1.0]
    rows = f9["presets"]["camera"]
    for rec in rows["hraware"]["records"]:
        assert rec["blend"]["0.0"] == pytest.approx(rows["unadapted"]["psnr"], abs=1e-9)
        assert rec["blend"]["1.0"] == pytest.approx(rec["psnr"], abs=1e-9)
        assert rec["blend"]["0.5"] != pytest.approx(rec["psnr"], abs=1e-3)  # in between: other weights
    assert rows["hraware"]["records"][-1]["psnr"] != pytest.approx(rows["unadapted"]["psnr"], abs=1e-3)
    table = proc.stdout.split("blended hraware")[1]
    last = [line.split() for line in table.splitlines()[2:5]]
    assert [row[0] for row in last] == ["0", "0.5", "1"] and float(last[0][-1]) == 0.0
