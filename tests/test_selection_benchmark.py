"""`benchmarks/selection.py`'s record-only rules and its --candidate parsing (the figures of
the benchmark itself are in benchmarks/RESULTS.md, not asserted here)."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

import ttasr
from ttasr.adapters.stopping import GuardedHeldOut, HeldOutPairs
from ttasr.models import OutputBlend

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str, file: str):
    """Import ``benchmarks/<file>`` as a module (with the benchmarks folder on the path meanwhile)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def selection():
    return _benchmark("selection_benchmark", "selection.py")


@pytest.fixture(scope="module")
def selection_cost():
    return _benchmark("selection_cost", "selection_cost.py")


def test_trust_region_adapts_only_when_consistency_gains_more_than_the_output_moves(selection):
    moves_more = [{"consistency": 0.010, "change": 0.0}, {"consistency": 0.008, "change": 0.004}]
    gains_more = [{"consistency": 0.010, "change": 0.0}, {"consistency": 0.004, "change": 0.002},
                  {"consistency": 0.003, "change": 0.005}]
    assert selection.trust_region(moves_more) == 0
    assert selection.trust_region(gains_more) == 1


def test_ema_agreement_skips_the_start_and_needs_every_gap(selection):
    records = [{"ema_gap": 0.0}, {"ema_gap": 0.004}, {"ema_gap": 0.002}, {"ema_gap": 0.003}]
    assert selection.ema_agreement(records) == 2
    assert selection.ema_agreement([{"ema_gap": 0.0}, {}]) == 0


def test_candidate_values_are_converted_like_the_cli(selection):
    got = selection.candidate_overrides(["kernel_estimator=bicubic", "ema_decay=0.99", "max_steps=300",
                                         "augment=false"])
    assert got == {"kernel_estimator": "bicubic", "ema_decay": 0.99, "max_steps": 300, "augment": False}
    with pytest.raises(SystemExit, match="no option 'ema_decy'"):
        selection.candidate_overrides(["ema_decy=0.9"])


def test_nested_candidate_settings_are_stored_as_json_and_compare_after_a_reload(selection):
    candidate = selection.candidate_overrides(["augment_config.usm_p=0", "ema_decay=0.99"])
    stored = selection.recorded(candidate)
    assert stored["augment_config"]["usm_p"] == 0.0
    assert stored["augment_config"]["affine_scale"] == [0.5, 1.0]
    reloaded = json.loads(json.dumps(stored))
    assert reloaded == selection.recorded(candidate)
    other = selection.recorded(selection.candidate_overrides(["augment_config.usm_p=0.3", "ema_decay=0.99"]))
    assert reloaded != other


def test_resume_refuses_results_of_another_candidate(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"candidate": {"noise_augment": "auto", "ema_decay": 0.99}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--resume", "--presets", "",
                           "--candidate", "noise_augment=always", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0
    assert "holds runs of the candidate" in proc.stderr


def test_report_merges_folders_of_the_same_candidate_and_refuses_others(tmp_path):
    def run(folder, candidate, preset, gain):
        folder.mkdir()
        records = [{"psnr": [30.0], "heldout": 1.0}, {"psnr": [30.0 + gain], "heldout": 0.5}]
        (folder / "results.json").write_text(json.dumps(
            {"candidate": candidate, preset: {"unadapted": [30.0], "trajectory": {"records": records}}}))

    same = {"noise_augment": "always", "ema_decay": 0.99}
    run(tmp_path / "a", same, "camera", 0.25)
    run(tmp_path / "b", same, "jpeg-heavy", -0.5)
    run(tmp_path / "c", dict(same, ema_decay=0.999), "optical-blur", 0.1)
    script = [sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets",
              "camera,jpeg-heavy", "--out", str(tmp_path / "a")]
    proc = subprocess.run([*script, "--merge", str(tmp_path / "b")], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    heldout = next(line for line in proc.stdout.splitlines() if line.startswith("heldout "))
    assert "+0.250 [  50]" in heldout and "-0.500 [  50]" in heldout
    proc = subprocess.run([*script, "--merge", str(tmp_path / "c")], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode != 0 and "not comparable" in proc.stderr


def test_timed_rule_selects_as_the_rule_times_every_evaluation_and_never_stops(selection_cost, tiny_compact,
                                                                                 photo):
    fast = dict(batch_size=2, patch_size=16, progress=False, attention="none", augment=False, ema_decay=None,
                kernel_estimator="bicubic", lr=1e-3, max_steps=6, eval_every=2, seed=3)
    plain = ttasr.AdaSSR(tiny_compact, stopping=HeldOutPairs(patience=1), **fast).fit(photo)
    timed = selection_cost.Timed(HeldOutPairs(patience=1))
    fit = ttasr.AdaSSR(tiny_compact, stopping=timed, **fast).fit(photo)
    assert timed.calls == 4 and timed.seconds > 0  # the start and steps 2, 4, 6
    assert fit.results[0].steps == 6  # patience 1 may stop the plain rule; the timed one runs on
    scores = [h["score"] for h in fit.results[0].history if "score" in h]
    plain_scores = [h["score"] for h in plain.results[0].history if "score" in h]
    assert scores[:len(plain_scores)] == plain_scores


def test_timed_guarded_rule_gets_the_start_and_selects_as_the_rule(selection_cost, tiny_compact, photo):
    fast = {"batch_size": 2, "patch_size": 16, "progress": False, "attention": "none", "augment": False,
            "ema_decay": None, "kernel_estimator": "bicubic", "lr": 1e-3, "max_steps": 4, "eval_every": 2, "seed": 3}
    plain = ttasr.AdaSSR(tiny_compact, stopping=GuardedHeldOut(), **fast).fit(photo)
    rule = GuardedHeldOut()
    timed = selection_cost.Timed(rule)
    fit = ttasr.AdaSSR(tiny_compact, stopping=timed, **fast).fit(photo)
    assert rule.limit == plain.stopping.limit and timed.calls == 3 and timed.seconds > 0
    assert fit.results[0].best_step == plain.results[0].best_step
    # the unit of AdaSSR's blend check: one held-out evaluation of the unadapted weights after the fit
    net = fit.model.module.eval()
    assert 0 < selection_cost.held_out_seconds(fit, rule, net) < 60
    assert 0 < selection_cost.held_out_seconds(fit, rule, OutputBlend(net, net, 0.5)) < 60  # two networks


def test_single_image_report_lets_each_rule_select_per_photo_and_keeps_modes_apart(tmp_path):
    def group(gain, heldout_after):
        records = [{"psnr": [30.0], "heldout": 1.0}, {"psnr": [30.0 + gain], "heldout": heldout_after}]
        return {"unadapted": [30.0], "trajectory": {"records": records}, "oracle": {"records": records}}

    candidate = {"noise_augment": "always", "ema_decay": 0.99}
    single = tmp_path / "single"
    single.mkdir()
    # the held-out error falls on the first photo only: heldout adapts it and keeps the second at the start
    (single / "results.json").write_text(json.dumps({"candidate": candidate, "mode": "single", "camera": {
        "images": {"a": group(0.4, 0.5), "b": group(-0.6, 1.5)}}}))
    multi = tmp_path / "multi"
    multi.mkdir()
    (multi / "results.json").write_text(json.dumps({"candidate": candidate, "jpeg-heavy": group(0.1, 0.5)}))
    script = [sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets", "camera",
              "--out", str(single)]
    proc = subprocess.run(script, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[2:]}
    assert "+0.200 [0/50] +0.00" in rows["heldout"]  # mean of +0.4 (step 50) and 0 (step 0)
    assert "-0.100 [  50] -0.60" in rows["final"]
    assert "+0.200 [0/50]" in rows["oracle"]  # the HR picks per photo too
    proc = subprocess.run([*script, "--merge", str(multi)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0 and "multi-image runs" in proc.stderr


def test_report_shows_each_shrunk_rule_at_the_step_the_rule_selects(tmp_path):
    shrink0 = {"0.5": [30.0]}
    records = [{"psnr": [30.0], "heldout": 1.0, "heldout+gain": 1.0, "shrink": shrink0},
               {"psnr": [29.0], "heldout": 0.995, "heldout+gain": 0.995, "shrink": {"0.5": [30.3]}},
               {"psnr": [28.0], "heldout": 1.2, "heldout+gain": 1.2, "shrink": {"0.5": [29.9]}}]
    (tmp_path / "results.json").write_text(json.dumps({"candidate": {}, "camera": {
        "unadapted": [30.0], "trajectory": {"records": records}}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets",
                           "camera", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = {line[:20].strip(): line for line in proc.stdout.splitlines()[2:]}
    assert "-0.100 [ 100]" in rows["final ×0.5"]  # the last evaluation, pulled half-way back
    assert "+0.000 [   0]" in rows["heldout+gain ×0.5"]  # a 0.5 % fall is under the 1 % margin: the start
    assert "-2.000 [ 100]" in rows["final"]


def test_report_replays_the_guarded_rule_on_the_recorded_back_projection(tmp_path):
    """``guarded+gain`` is ``heldout+gain`` where an evaluation whose recorded back-projection
    error exceeds the start's cannot win: here the held-out best (step 100) is vetoed."""
    records = [{"psnr": [30.0], "heldout": 1.0, "consistency": 0.10, "shrink": {"0.5": [30.0]}},
               {"psnr": [30.4], "heldout": 0.9, "consistency": 0.09, "shrink": {"0.5": [30.2]}},
               {"psnr": [29.0], "heldout": 0.5, "consistency": 0.12, "shrink": {"0.5": [29.6]}}]
    for r in records:  # the recorder stores the held-out error under both names
        r["heldout+gain"] = r["heldout"]
    (tmp_path / "results.json").write_text(json.dumps({"candidate": {}, "camera": {
        "unadapted": [30.0], "trajectory": {"records": records}}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets",
                           "camera", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line[:20].strip(): line for line in proc.stdout.splitlines()[2:]}
    assert "-1.000 [ 100]" in rows["heldout+gain"]
    assert "+0.400 [  50]" in rows["guarded+gain"] and "+0.200 [  50]" in rows["guarded+gain ×0.5"]
    assert "+0.400 [  50]" in rows["consistency"]
    assert "guarded-s1+gain" not in rows  # no smoothed residuals recorded: not replayed
    smoothed = [0.05, 0.06, 0.04]  # the smoothed residual lets step 100 through, where the raw one vetoes it
    for r, e in zip(records, smoothed):
        r["consistency_smoothed"] = {"1.0": e}
    (tmp_path / "results.json").write_text(json.dumps({"candidate": {}, "camera": {
        "unadapted": [30.0], "trajectory": {"records": records}}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets",
                           "camera", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          check=False)
    rows = {line[:20].strip(): line for line in proc.stdout.splitlines()[2:]}
    assert "+0.400 [  50]" in rows["guarded+gain"] and "-1.000 [ 100]" in rows["guarded-s1+gain"]


def test_recorder_trains_where_the_default_would_not_and_the_report_says_so(selection, tiny_compact, photo,
                                                                            tmp_path):
    from ttasr.degradations import bicubic_kernel

    a = selection.RecordedAdaSSR(tiny_compact, kernel=bicubic_kernel(2), batch_size=2, patch_size=12, max_steps=2,
                                 stopping="fixed", attention="none", progress=False).fit(photo)
    assert a.results[0].steps == 2 and "bicubic x2" in a.gap  # the default keeps the start here
    records = [{"psnr": [30.0], "heldout": 1.0}, {"psnr": [29.0], "heldout": 0.5}]
    (tmp_path / "results.json").write_text(json.dumps({"candidate": {}, "bicubic-clean": {
        "unadapted": [30.0], "trajectory": {"records": records, "not_adapted": a.gap}}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets",
                           "bicubic-clean", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"# bicubic-clean: the default AdaSSR would not adapt ({a.gap})" in proc.stdout


def test_recorder_scores_each_blend_as_a_rule_without_the_hr_would_see_it(selection, tiny_compact, photo):
    """At λ = 1 a blend is the whole weights: its PSNR, back-projection errors and held-out error
    equal the evaluation's own; at λ = 0.5 they are the blend's, not the whole weights'."""
    import torch.nn.functional as F

    hr = F.interpolate(photo, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    rec = selection.Recorder([hr], {"heldout": HeldOutPairs()}, niqe=lambda sr: 0.0, shrink=(0.5, 1.0))
    selection.RecordedAdaSSR(tiny_compact, stopping=rec, batch_size=2, patch_size=12, max_steps=4, eval_every=2,
                             lr=1e-2, attention="none", progress=False, seed=0).fit(photo)
    last = rec.records[-1]
    assert set(last["shrink"]) == set(last["shrink_consistency"]) == set(last["shrink_heldout"]) == {"0.5", "1.0"}
    assert last["shrink"]["1.0"] == pytest.approx(last["psnr"], abs=1e-6)
    assert last["shrink_consistency"]["1.0"] == pytest.approx(last["consistency_images"], rel=1e-5)
    assert last["shrink_heldout"]["1.0"] == pytest.approx(last["heldout"], rel=1e-5)
    assert last["shrink_heldout_l2"]["1.0"] == pytest.approx(last["heldout_l2"], rel=1e-5)
    assert 0 < last["heldout_l2"] < last["heldout"]  # squares of errors < 1
    assert last["shrink_heldout"]["0.5"] != pytest.approx(last["heldout"], rel=1e-6)  # the blend was scored
    # the output blend: whole at λ = 1; at λ = 0.5 its back-projection error lies within the ends'
    assert last["mix"]["1.0"] == pytest.approx(last["psnr"], abs=1e-6)
    assert last["mix_consistency"]["1.0"] == pytest.approx(last["consistency_images"], rel=1e-5)
    assert last["mix_heldout"]["1.0"] == pytest.approx(last["heldout"], rel=1e-5)
    assert last["mix_heldout"]["0.5"] <= (rec.records[0]["heldout"] + last["heldout"]) / 2 + 1e-7
    assert last["mix_heldout"]["0.5"] != pytest.approx(last["heldout"], rel=1e-6)


def test_recorder_scores_the_held_out_error_through_jpeg_only_where_jpeg_shows(selection, tiny_compact, photo):
    import torch.nn.functional as F

    from ttasr.degradations import jpeg

    hr = F.interpolate(photo, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)

    def records(lr):
        rec = selection.Recorder([hr], {"heldout": HeldOutPairs()}, niqe=lambda sr: 0.0, shrink=(0.5, 1.0))
        selection.RecordedAdaSSR(tiny_compact, stopping=rec, batch_size=2, patch_size=12, max_steps=2, eval_every=2,
                                 lr=1e-2, attention="none", progress=False, seed=0).fit(lr)
        return rec.records

    clean, compressed = records(photo)[-1], records(jpeg(photo, 30))[-1]
    assert clean["heldout_jpeg_images"] == [pytest.approx(clean["heldout"], rel=1e-6)]  # no JPEG: the plain error
    assert clean["heldout_jpeg_in"] <= clean["heldout"] + 1e-9  # the same pairs, the prediction clamped to [0, 1]
    assert compressed["heldout_jpeg"] != pytest.approx(compressed["heldout"], rel=1e-3)
    assert compressed["heldout_jpeg_in"] != pytest.approx(compressed["heldout_jpeg"], rel=1e-3)
    assert compressed["mix_heldout_jpeg"]["1.0"] == [pytest.approx(compressed["heldout_jpeg"], rel=1e-6)]
    assert set(compressed["mix_heldout_jpeg_in"]) == {"0.5", "1.0"}


def test_the_q_rows_pick_by_the_held_out_error_through_jpeg(selection):
    start = {"psnr": [30.0], "heldout+gain": 1.0, "heldout_jpeg": 1.0, "heldout_jpeg_in": 1.0, "consistency": 0.1,
             "shrink": {"0.1": [30.0]}, "mix": {"0.5": [30.0], "1.0": [30.0]}}
    early = {"psnr": [31.0], "heldout+gain": 0.9, "heldout_jpeg": 0.95, "heldout_jpeg_in": 0.99, "consistency": 0.2,
             "shrink": {"0.1": [30.1]}, "mix": {"0.5": [30.5], "1.0": [31.0]}}
    late = {"psnr": [33.0], "heldout+gain": 0.95, "heldout_jpeg": 0.9, "heldout_jpeg_in": 0.8, "consistency": 0.3,
            "shrink": {"0.1": [30.3]}, "mix": {"0.5": [31.5], "1.0": [33.0]}}
    group = {"jpeg": [True], "chroma_noise": [1.0], "noise_share": [0.0], "noise_share_channels": [0.0],
             "trajectory": {"records": [start, early, late]}}
    pick = partial(selection.summary_pick, group, eval_every=100)
    assert pick(*selection.SUMMARY_RULES["blind K + Z5 + Y3"]) == [30.5]  # the plain held-out error: step 100
    assert pick(*selection.SUMMARY_RULES["blind Q: K + Z5 + Y3"]) == [31.5]  # through JPEG: step 200, half
    assert pick(*selection.SUMMARY_RULES["blind Q whole: K + Z5 + Y3"]) == [33.0]
    assert pick(*selection.SUMMARY_RULES["blind Q2: K + Z5 + Y3"]) == [31.5]


def test_kept_outputs_let_flat_blend_score_the_blind_jpeg_pick_offline(selection, tiny_compact, photo, tmp_path):
    """The recorder keeps each evaluation's output (float16) with the LR and HR; flat_blend.py
    recomputes half of the held-out pick from them as the records have it, and the flat gate
    returns the whole pick only where every image is flat enough."""
    import torch
    import torch.nn.functional as F

    flat_blend = _benchmark("flat_blend", "flat_blend.py")
    hr = F.interpolate(photo, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    kept = tmp_path / "run" / "outputs" / "camera" / "all"
    rec = selection.Recorder([hr], {"heldout": HeldOutPairs(), "heldout+gain": HeldOutPairs(min_gain=0.01)},
                             niqe=lambda sr: 0.0, shrink=(0.5, 1.0), keep=kept)
    selection.RecordedAdaSSR(tiny_compact, stopping=rec, batch_size=2, patch_size=12, max_steps=4, eval_every=2,
                             lr=1e-2, attention="none", progress=False, seed=0).fit(photo)
    assert sorted(p.name for p in kept.iterdir()) == ["eval000_img0.pt", "eval001_img0.pt", "eval002_img0.pt",
                                                       "hr_img0.pt", "lr_img0.pt"]
    assert torch.load(kept / "eval002_img0.pt").dtype == torch.float16
    rows = {"unadapted": rec.records[0]["psnr"], "jpeg": [True], "trajectory": {"records": rec.records}}
    k = selection.replay_records(selection.candidates()["heldout+gain"], "heldout+gain", rec.records)
    got = flat_blend.score_group(rows, kept, [(4.0, 5.0, 1.0)], [0.0, 1.01], scale=2)
    assert got["step"] == k > 0
    assert got["half, recomputed"] == pytest.approx(got["what ships"], abs=0.02)  # float16 outputs
    assert list(got["whole if every m ≥ 0"]) == list(got["whole pick"])
    assert list(got["whole if every m ≥ 1.01"]) == list(got["what ships"])
    assert 0 < got["m"][0] < 1
    assert flat_blend.score_group({**rows, "jpeg": [False]}, kept, [], [0.7]) == {}


def test_jpeg_drift_returns_the_whole_step_only_where_the_output_settles_and_keeps_its_detail(tmp_path):
    """Claim D's readings on kept outputs: a run that keeps moving after the step drifts (> 1), one that
    settles does not; a step that smooths the photo flat keeps little detail; D takes the whole step only
    where JPEG shows, the output settles and keeps its detail."""
    import torch

    drift = _benchmark("jpeg_drift", "jpeg_drift.py")
    g = torch.Generator().manual_seed(0)
    start = torch.rand(1, 3, 48, 48, generator=g)
    step = (start + 0.05 * torch.randn(1, 3, 48, 48, generator=g)).clamp(0, 1)
    moving = (step + 0.2 * torch.randn(1, 3, 48, 48, generator=g)).clamp(0, 1)
    flat = torch.full_like(start, 0.5) + 0.001 * torch.randn(1, 3, 48, 48, generator=g)
    kept = tmp_path / "run" / "outputs" / "camera" / "all"
    kept.mkdir(parents=True)
    for i, outputs in enumerate([(start, step, step), (start, step, moving), (start, flat, flat)]):
        for e, out in enumerate(outputs):
            torch.save(out.to(torch.float16), kept / f"eval{e:03d}_img{i}.pt")
    y = [drift.luma(kept, e, 1) for e in range(3)]
    assert drift.drift(*y) > 1 and drift.drift(*[drift.luma(kept, e, 0) for e in range(3)]) == 0
    assert drift.detail(drift.luma(kept, 0, 2), drift.luma(kept, 1, 2)) < 0.01
    record = {"psnr": [31.0, 32.0, 33.0], "mix": {"0.5": [30.5, 31.0, 31.5]}, "heldout+gain": 1.0, "consistency": 0.0}
    rows = {"unadapted": [30.0] * 3, "jpeg": [True] * 3, "chroma_noise": [0.0] * 3, "noise_share": [0.0] * 3,
            "noise_share_channels": [0.0] * 3, "trajectory": {"records": [{**record, "psnr": [30.0] * 3,
                                                                             "mix": {"0.5": [30.0] * 3}}, record, record]}}
    got = drift.score_group(rows, kept, every=300, step=300, max_drift=0.4, min_detail=0.12)
    assert got["settled"] == [1.0, 0.0, 0.0]
    assert got["D"][0] == got["whole of step 300"][0] == 1.0 and got["D"][1:] == got["what ships"][1:]
    assert got["pick"] == [300.0] * 3 and got["D2: whole of shipped step"] == got["D"]  # K: the start kept
    got = drift.score_group({**rows, "jpeg": [False, True, True]}, kept, 300, 300, 0.4, 0.12)
    assert got["settled"][0] == 0.0 and got["D"][0] == got["what ships"][0]
    # D2 reads at the step that ships: here the held-out pick, the last evaluation, where nothing drifts
    picked = copy.deepcopy(rows)
    picked["trajectory"]["records"][2] = {**record, "heldout+gain": 0.5}
    got = drift.score_group(picked, kept, 300, 300, 0.4, 0.12)
    assert got["pick"] == [600.0] * 3 and got["what ships"] == [0.5, 1.0, 1.5]
    assert got["D2: whole of shipped step"] == [1.0, 2.0, 1.5]  # the flat output keeps what ships


def test_jpeg_fraction_replays_any_fraction_of_the_output_from_the_start_half_and_whole():
    """Claim L's replay: the PSNR of an output blend follows from those of the start, half and whole (the
    error is quadratic in the fraction); the fraction applies to every image of a group where JPEG shows."""
    import torch

    fraction = _benchmark("jpeg_fraction", "jpeg_fraction.py")
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    n0 = hr + 0.1 * torch.randn(1, 1, 16, 16, generator=g, dtype=torch.float64)
    n1 = hr + 0.05 * torch.randn(1, 1, 16, 16, generator=g, dtype=torch.float64)

    def psnr(x):
        return float(-10 * torch.log10((x - hr).square().mean()))

    for f in (0.0, 0.3, 0.6, 0.9, 1.0):
        direct = psnr((1 - f) * n0 + f * n1)
        assert fraction.blend_psnr(psnr(n0), psnr((n0 + n1) / 2), psnr(n1), f) == pytest.approx(direct, abs=1e-9)
    start = {"psnr": [30.0, 30.0], "mix": {"0.5": [30.0, 30.0]}, "heldout+gain": 1.0, "consistency": 0.0}
    later = {"psnr": [32.0, 29.0], "mix": {"0.5": [31.5, 30.2]}, "heldout+gain": 0.5, "consistency": 0.0}
    rows = {"unadapted": [30.0, 30.0], "jpeg": [True, False], "chroma_noise": [0.0] * 2, "noise_share": [0.0] * 2,
            "noise_share_channels": [0.0] * 2, "trajectory": {"records": [start, later]}}
    got = fraction.score_group(rows, every=100, fractions=[0.5, 1.0])
    assert got["K + Z5 + Y3 (0.5)"] == got["0.5"] == pytest.approx([1.5, 0.2])  # half of the pick, both images
    assert got["1"] == pytest.approx([2.0, -1.0])
    later["shrink"] = {"0.1": [30.1, 29.9]}
    clean = fraction.score_group({**rows, "jpeg": [False, False]}, 100, [1.0])
    assert clean["1"] == clean["K + Z5 + Y3 (0.5)"] == pytest.approx([0.1, -0.1])  # no JPEG: a tenth of the weights


def test_flat_blend_means_average_the_kept_outputs_over_the_trajectory(tmp_path):
    """--means: the uniform mean of the outputs of evaluations 0 … pick, 0 … last, and half of
    the mean of 1 … last with the start, each scored as the photo's PSNR-Y gain."""
    import numpy as np
    import torch

    from ttasr.metrics import psnr_y

    flat_blend = _benchmark("flat_blend", "flat_blend.py")
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 32, 32, generator=g)
    outs = [(hr + 0.1 * torch.randn(1, 3, 32, 32, generator=g)).clamp(0, 1) for _ in range(4)]
    for e, out in enumerate(outs):
        torch.save(out.half(), tmp_path / f"eval{e:03d}_img0.pt")
    torch.save(hr, tmp_path / "hr_img0.pt")
    outs = [torch.load(tmp_path / f"eval{e:03d}_img0.pt").float() for e in range(4)]
    psnr = [psnr_y(o, hr, 4) for o in outs]
    records = [{"psnr": [v], "heldout+gain": h, "mix": {"0.5": [v]}, "shrink": {}}
               for v, h in zip(psnr, (1.0, 0.8, 0.5, 0.9))]  # the held-out rule picks evaluation 2
    rows = {"unadapted": [psnr[0]], "jpeg": [True], "trajectory": {"records": records}}
    got = flat_blend.score_group(rows, tmp_path, [], [], means=True)
    assert got["step"] == 2
    for name, image in (("mean of 0 … pick", sum(outs[:3]) / 3), ("mean of 0 … last", sum(outs) / 4),
                        ("½ mean of 1 … last", 0.5 * outs[0] + 0.5 * sum(outs[1:]) / 3)):
        assert got[name] == pytest.approx(np.array([psnr_y(image.clamp(0, 1), hr, 4) - psnr[0]]), abs=1e-6), name
    assert "mean of 0 … pick" not in flat_blend.score_group(rows, tmp_path, [], [])


def test_the_flat_region_map_is_one_on_flat_ground_and_falls_on_texture():
    import torch

    flat_blend = _benchmark("flat_blend", "flat_blend.py")
    flat = torch.full((1, 3, 32, 64), 0.5)
    striped = flat.clone()
    striped[..., 32:] += 0.2 * (torch.arange(32).remainder(2).view(1, 1, 1, 32) - 0.5)  # ±25.5 levels: v ≈ 650
    w = flat_blend.flat_region_weights(striped)
    assert w.shape == (1, 1, 32, 64)
    torch.testing.assert_close(flat_blend.flat_region_weights(flat), torch.ones(1, 1, 32, 64), atol=1e-3, rtol=0)
    assert float(w[..., :20].min()) > 0.999 and float(w[..., 44:].max()) < 0.05
    # tau is the local standard deviation that gives one half: a stripe of ±5 levels has v = 25 = 5²
    soft = flat + 10 / 255 * (torch.arange(64).remainder(2).view(1, 1, 1, 64) - 0.5)
    assert float(flat_blend.flat_region_weights(soft, 4.0, 5.0)[..., 12:-12, 16:-16].mean()) == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(flat_blend.flat_region_weights(striped.half()), w, atol=1e-3, rtol=0)


def test_runs_of_one_preset_made_in_separate_folders_report_as_one_group(tmp_path, selection):
    records = [{"psnr": [30.0, 31.0], "heldout": 1.0}, {"psnr": [30.2, 31.1], "heldout": 0.5}]
    candidate = {"noise_augment": "always", "ema_decay": 0.99}
    trajectory, paper = tmp_path / "trajectory", tmp_path / "paper"
    for folder, rows in ((trajectory, {"trajectory": {"records": records}}),
                         (paper, {"paper": {"psnr": [29.9, 31.3], "best_step": 100}})):
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(
            {"candidate": candidate, "camera": {"unadapted": [30.0, 31.0], **rows}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--report", "--presets",
                           "camera", "--out", str(trajectory), "--merge", str(paper)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line[:20].strip(): line for line in proc.stdout.splitlines()[2:]}
    assert "+0.100 [ 100] -0.10" in rows["paper preset"]  # (-0.1 + 0.3) / 2, the worst photo -0.1
    assert "+0.150 [  50] +0.10" in rows["heldout"]
    # key by key: what both hold comes from the first folder, what one holds is kept
    got = selection.merged({"a": {"x": 1, "y": {"p": 1}}, "b": 2}, {"a": {"y": {"q": 3}, "z": 4}, "b": 5, "c": 6})
    assert got == {"a": {"x": 1, "y": {"p": 1, "q": 3}, "z": 4}, "b": 2, "c": 6}


def test_summary_counts_the_runs_where_a_blend_breaks_the_no_harm_bounds_per_mode(tmp_path):
    """Step 100 is accepted by the guard (lower back-projection error) and wins on the held-out
    error. Whole, it costs the second photo 0.2 dB (beyond the 0.1 dB bound); half of it 0.05."""
    def rec(psnr, heldout, consistency, blends):
        return {"psnr": psnr, "heldout": heldout, "heldout+gain": heldout, "consistency": consistency,
                "shrink": {lam: blends[i] for i, lam in enumerate(("0.1", "0.2", "0.5"))}}

    records = [rec([30.0, 40.0], 1.0, 0.10, [[30.0, 40.0]] * 3),
               rec([31.0, 39.8], 0.5, 0.09, [[30.1, 40.0], [30.2, 39.95], [30.5, 39.95]])]
    unrecorded = [{"psnr": [30.0, 40.0], "heldout": 1.0}, {"psnr": [20.0, 20.0], "heldout": 0.1}]
    multi, single = tmp_path / "m-camera", tmp_path / "s"
    for folder, results in (
            (multi, {"mode": "multi", "camera": {"unadapted": [30.0, 40.0], "trajectory": {"records": records}},
                     "bicubic-clean": {"unadapted": [30.0, 40.0], "trajectory": {"records": records}},
                     "optical-blur": {"unadapted": [30.0, 40.0], "trajectory": {"records": unrecorded}}}),
            (single, {"mode": "single", "camera": {"images": {"a": {"unadapted": [30.0, 40.0],
                                                                    "trajectory": {"records": records}}}}})):
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--summary", str(multi),
                           str(single)], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("single-image:")
    assert len(out) == 2 and out[0].startswith("multi-image: 1 preset runs")  # bicubic-clean, unrecorded: left out
    multi_rows = {line[:27].strip(): line for line in out[0].splitlines()[2:]}
    assert "+0.400   -0.20  1: m-camera +0.40/-0.20" in multi_rows["guarded-fallback ×1|0.2"]
    assert "+0.225   -0.05  0:" in multi_rows["guarded-fallback ×0.5|0.2"]
    assert "+0.075   -0.05  0:" in multi_rows["heldout+gain ×0.2"]
    assert "1: s:camera +0.40/-0.20" in out[1]


def test_a_budget_replays_each_run_as_a_fit_stopped_there_and_leaves_out_shorter_runs(tmp_path, selection):
    """The held-out error falls until step 200, where the photo loses 3 dB. Stopped at step 100,
    the fit picks step 100 (+2 dB; the blind default keeps a tenth of it, in weights: +0.2); at
    200 it picks step 200 (-0.3), and the 100-step run is left out and named."""
    def rec(psnr, heldout):
        return {"psnr": [psnr], "heldout": heldout, "heldout+gain": heldout, "consistency": 0.1,
                "shrink": {lam: [30.0 + float(lam) * (psnr - 30.0)] for lam in ("0.1", "0.2", "0.5")},
                "mix": {lam: [30.0 + float(lam) * (psnr - 30.0)] for lam in ("0.1", "0.2", "0.5", "1.0")}}

    records = [rec(30.0, 1.0), rec(32.0, 0.9), rec(27.0, 0.8)]
    group = {"unadapted": [30.0], "jpeg": [False], "chroma_noise": [1.0], "noise_share": [0.0],
             "trajectory": {"records": records},
             "oracle": {"records": records}}
    cut = selection.cut_at([group], 100, 100)
    assert cut is not None and cut[0]["trajectory"]["records"] == records[:2] == cut[0]["oracle"]["records"]
    assert group["trajectory"]["records"] == records  # the runs read are left as they were
    assert selection.cut_at([group], 300, 100) is None  # the trajectory ends at step 200
    for name, recs in (("long-camera", records), ("short-camera", records[:2])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"mode": "multi", "eval_every": 100, "camera": {**group, "trajectory": {"records": recs}}}))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--summary",
                           str(tmp_path / "long-camera"), str(tmp_path / "short-camera"), "--budget", "100,200",
                           "--row", "blind default"], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    at100, at200 = proc.stdout.split("## --budget 200")
    assert "multi-image: 2 preset runs" in at100 and "blind default                +0.200   +0.20  0:" in at100
    assert "# left out: short-camera ends before step 200" in at200 and "multi-image: 1 preset runs" in at200
    assert "blind default                -0.300   -0.30  1: long-camera -0.30/-0.30" in at200
    assert "heldout+gain" not in proc.stdout  # --row: that row only


def test_a_blend_counts_as_a_dip_only_below_both_of_its_ends(selection):
    start = {"psnr": [30.0, 40.0]}
    group = {"unadapted": [30.0, 40.0], "trajectory": {"records": [start, {
        "psnr": [31.0, 39.0], "shrink": {"0.2": [29.9, 39.5], "0.5": [30.5, 38.98]}}]}}
    # photo 0: 0.1 dB below the start at ×0.2 while the whole weights gain: a dip; photo 1: ×0.5 is
    # 0.02 dB below the whole weights' −1.0, within 0.05 dB of the lower end: none
    assert selection.dips_below_both_ends([group]) == (1, 2)


def test_checked_picks_replay_the_blend_check_on_the_recorded_held_out_errors(selection):
    start = {"psnr": [30.0], "heldout": 1.0, "heldout+gain": 1.0, "consistency": 0.10,
             "shrink": {"0.2": [30.0], "0.5": [30.0]}, "shrink_heldout": {"0.2": 1.0, "0.5": 1.0}}
    accepted = {"psnr": [31.0], "heldout": 0.5, "heldout+gain": 0.5, "consistency": 0.09,
                "shrink": {"0.2": [30.1], "0.5": [29.8]}, "shrink_heldout": {"0.2": 0.95, "0.5": 1.05}}
    group = {"trajectory": {"records": [start, accepted]}}
    assert selection.fallback_picks([group], 50) == [([29.8], 50)]  # half of the accepted weights
    assert selection.checked_picks([group], 50) == [([30.1], 50)]  # half does worse held out: a fifth
    accepted["shrink_heldout"]["0.2"] = 1.01
    assert selection.checked_picks([group], 50) == [([30.0], 50)]  # no blend passes: the start
    # blends of the outputs are checked on their own held-out errors (AdaSSR's default with this rule)
    accepted.update(mix={"0.2": [30.3], "0.5": [30.6]}, mix_heldout={"0.2": 0.9, "0.5": 0.8})
    assert selection.checked_picks([group], 50, "outputs") == [([30.6], 50)]
    accepted["mix_heldout"]["0.5"] = 1.1
    assert selection.checked_picks([group], 50, "outputs") == [([30.3], 50)]
    # where JPEG shows, the whole output is checked first (AdaSSR's compressed_blend), then the smaller ones
    accepted["mix"]["1.0"], accepted["mix_heldout"]["1.0"] = [31.0], 0.7
    assert selection.checked_pick([start, accepted], "0.5", "0.2", "outputs", compressed=True) == [31.0]
    assert selection.checked_pick([start, accepted], "0.5", "0.2", "outputs") == [30.3]
    assert selection.checked_pick([start, accepted], "0.5", "0.2", "weights", compressed=True) == [30.0]  # weights: no
    accepted["mix_heldout"]["1.0"] = 1.2
    assert selection.checked_pick([start, accepted], "0.5", "0.2", "outputs", compressed=True) == [30.3]


def test_the_single_image_rows_return_more_of_the_held_out_pick_where_the_image_shows_jpeg(selection):
    start = {"psnr": [30.0], "heldout": 1.0, "heldout+gain": 1.0, "consistency": 0.1, "shrink": {"0.2": [30.0]}}
    pick = {"psnr": [31.0], "heldout": 0.9, "heldout+gain": 0.9, "consistency": 0.2, "shrink": {"0.2": [30.3]}}
    late = {"psnr": [32.0], "heldout": 0.895, "heldout+gain": 0.895, "consistency": 0.3, "shrink": {"0.2": [30.5]}}
    group = {"jpeg": [True], "trajectory": {"records": [start, pick, late]}}  # late: under 1 % better, not picked
    pick["shrink"]["0.5"] = [30.6]
    whole, half = selection.SUMMARY_RULES["single: ×1 JPEG, ×0.2 (JS)"], \
        selection.SUMMARY_RULES["single default: ×0.5 JPEG|0.2"]
    assert (selection.summary_pick(group, *whole), selection.summary_pick(group, *half)) == ([31.0], [30.6])
    assert selection.summary_pick({**group, "jpeg": [False]}, *half) == [30.3]


def test_the_noise_rows_return_half_of_the_final_change_only_where_the_images_are_noisy(selection):
    start = {"psnr": [30.0], "heldout": 1.0, "heldout+gain": 1.0, "consistency": 0.1, "shrink": {"0.2": [30.0]}}
    pick = {"psnr": [31.0], "heldout": 0.9, "heldout+gain": 0.9, "consistency": 0.2,
            "shrink": {"0.2": [30.3], "0.5": [30.6]}}
    last = {"psnr": [34.0], "heldout": 0.95, "heldout+gain": 0.95, "consistency": 0.3,
            "shrink": {"0.2": [30.8], "0.5": [32.0]}}
    noisy = {"jpeg": [False], "chroma_noise": [3.0], "trajectory": {"records": [start, pick, last]}}
    row = selection.SUMMARY_RULES["single default: + ½ final"]
    assert selection.summary_pick(noisy, *row) == [32.0]  # the last record, half
    assert selection.summary_pick({**noisy, "chroma_noise": [2.4]}, *row) == [30.3]  # below 2.5: the default
    assert selection.summary_pick({**noisy, "jpeg": [True]}, *row) == [30.6]  # JPEG: half of the pick
    pair = {"jpeg": [False, False], "chroma_noise": [3.0, 1.0]}
    assert selection.noisy(pair) and not selection.noisy(pair, every=True)  # half of the images (claim Y2)
    assert not selection.noisy({"jpeg": [False] * 3, "chroma_noise": [3.0, 1.0, 1.0]})
    # claim Y: a white-noise share of 0.3 counts as noise too; the 'chroma only' rows are the rule before it
    grey = {**noisy, "chroma_noise": [0.5], "noise_share": [0.4]}
    assert selection.noisy(grey) and not selection.noisy(grey, luma=False)
    assert not selection.noisy({**grey, "noise_share": [0.29]})
    assert selection.summary_pick(grey, *row) == [32.0]
    assert selection.summary_pick(grey, *selection.SUMMARY_RULES["single: ½ final, chroma only"]) == [30.3]
    # a run recorded before Y can be told only where JPEG or chroma noise decides
    assert selection.noise_known(noisy) and not selection.noise_known({**noisy, "chroma_noise": [2.4]})
    assert selection.noise_known({**noisy, "chroma_noise": [2.4], "jpeg": [True]})
    # claim Z: where every image's white-noise share reaches 0.3, the whole last step; Z2: one channel at a time too
    z = selection.SUMMARY_RULES["single: ½ final + Z"]
    assert selection.summary_pick(grey, *z) == [34.0] and selection.summary_pick(noisy, *z) == [32.0]
    speckled = {**noisy, "noise_share": [0.1], "noise_share_channels": [0.5]}
    assert selection.summary_pick(speckled, *z) == [32.0]
    assert selection.summary_pick(speckled, *selection.SUMMARY_RULES["single: ½ final + Z2"]) == [34.0]
    two = {"noise_share": [0.4, 0.1], "noise_share_channels": [0.4, 0.1]}
    assert (selection.noise_blend(two, "Z"), selection.noise_blend(two, "Z½"), selection.noise_blend(two, "")) == \
        ([0.5, 0.5], [1.0, 1.0], [0.5, 0.5])  # every image (adopted) or half of them (as registered)
    assert selection.noise_blend({"noise_share": [0.4, 0.3]}, "Z") == [1.0, 1.0]
    # claim Z5: each image by its own share, the one taken a channel at a time included
    assert selection.noise_blend({"noise_share": [0.4, 0.1], "noise_share_channels": [0.1, 0.1]}, "Z5") == [1.0, 0.5]
    assert selection.noise_blend({"noise_share": [0.1, 0.1], "noise_share_channels": [0.4, 0.1]}, "Z5") == [1.0, 0.5]
    step = {"psnr": [34.0, 31.0], "heldout": 0.95, "heldout+gain": 0.95, "consistency": 0.3,
            "mix": {"0.5": [32.0, 31.5]}, "shrink": {"0.5": [32.0, 31.5]}}
    mixed = {"jpeg": [False] * 2, "chroma_noise": [0.5, 0.5], "noise_share": [0.4, 0.1], "noise_share_channels": [0.4, 0.1],
             "unadapted": [30.0, 30.0],
             "trajectory": {"records": [{**step, "psnr": [30.0, 30.0], "mix": {"0.5": [30.0, 30.0]}}, step]}}
    z4, z5 = (selection.SUMMARY_RULES[k] for k in ("multi: ½ at 300 + Z4 + Y3", "multi: ½ at 300 + Z5 + Y3"))
    assert selection.summary_pick(mixed, *z4, 300) == [32.0, 31.5]  # half for both: one image is not white
    assert selection.summary_pick(mixed, *z5, 300) == [34.0, 31.5]  # the white one whole, the other half
    # the HR's best step for the group with each image's best fraction there, against one fraction for all
    assert selection.with_hr(mixed["trajectory"]["records"], "each") == [34.0, 31.5]
    assert selection.with_hr(mixed["trajectory"]["records"], "any") == [34.0, 31.0]


def test_the_blind_rows_blend_outputs_where_a_trace_shows_and_a_tenth_of_the_weights_elsewhere(selection):
    start = {"psnr": [30.0], "heldout": 1.0, "heldout+gain": 1.0, "consistency": 0.1,
             "shrink": {"0.1": [30.0]}, "mix": {"0.5": [30.0]}}
    pick = {"psnr": [31.0], "heldout": 0.9, "heldout+gain": 0.9, "consistency": 0.2,
            "shrink": {"0.1": [29.9]}, "mix": {"0.5": [30.7]}}
    last = {"psnr": [34.0], "heldout": 0.95, "heldout+gain": 0.95, "consistency": 0.3,
            "shrink": {"0.1": [30.1]}, "mix": {"0.5": [32.5]}}
    group = {"jpeg": [False], "chroma_noise": [1.0], "trajectory": {"records": [start, pick, last]}}
    half, whole = (selection.SUMMARY_RULES[k] for k in ("blind: ½ out if JPEG|noise", "blind: ×1 JPEG, ½ noise"))
    assert selection.summary_pick(group, *half) == [29.9]  # no trace: a tenth of the pick's weights
    assert selection.summary_pick({**group, "jpeg": [True]}, *half) == [30.7]  # half of the pick's outputs
    assert selection.summary_pick({**group, "jpeg": [True]}, *whole) == [31.0]
    assert selection.summary_pick({**group, "chroma_noise": [3.0]}, *whole) == [32.5]  # half of the last outputs
    before = selection.SUMMARY_RULES["blind: JPEG only"]  # the noise part withdrawn (until claim C)
    assert selection.summary_pick({**group, "chroma_noise": [3.0]}, *before) == [29.9]
    assert selection.summary_pick({**group, "jpeg": [True]}, *before) == [30.7]
    shipped = selection.SUMMARY_RULES["blind default"]  # the noise part at step 300: here the last record
    assert selection.summary_pick({**group, "chroma_noise": [3.0]}, *shipped) == [32.5]
    assert selection.summary_pick({**group, "chroma_noise": [3.0]}, *shipped, 300) == [30.7]  # record 1: step 300
    w = selection.SUMMARY_RULES["blind: ×1 out if JPEG (W)"]  # the whole pick where JPEG shows, else the same
    assert selection.summary_pick({**group, "jpeg": [True]}, *w) == [31.0]
    assert selection.summary_pick(group, *w) == selection.summary_pick(group, *shipped) == [29.9]
    assert selection.summary_pick({**group, "chroma_noise": [3.0]}, *w, 300) == [30.7]
    k = selection.SUMMARY_RULES["blind: + ½ at 300 if start (K)"]  # JPEG and the start kept: half at step 300
    assert selection.summary_pick({**group, "jpeg": [True]}, *k, 300) == [30.7]  # the pick is later: as shipped
    kept = {**group, "jpeg": [True], "trajectory": {"records": [start, {**pick, "heldout+gain": 1.0},
                                                                         {**last, "heldout+gain": 1.0}]}}
    assert selection.summary_pick(kept, *k, 300) == [30.7]  # record 1 (step 300), half of its output
    assert selection.summary_pick(kept, *k, 100) == [32.5]  # a budget below 300: the last record
    forced = selection.SUMMARY_RULES["noise rule forced @300"]  # a false alarm: half of step 300's output anyway
    assert selection.summary_pick(group, *forced, 300) == selection.summary_pick(kept, *forced, 300) == [30.7]
    assert selection.summary_pick(kept, *shipped, 100) == [30.0]  # what ships: the start


def test_the_capped_noise_rows_take_the_record_of_step_300_and_the_last_one_before_it(selection):
    def rec(psnr, mix, shrink):
        return {"psnr": [psnr], "heldout": 1.0, "heldout+gain": 1.0, "consistency": 0.1,
                "mix": {"0.5": [mix]}, "shrink": {"0.1": [30.0], "0.2": [30.0], "0.5": [shrink]}}

    records = [rec(30.0, 30.0, 30.0)] + [rec(30.0 + k, 30.0 + k / 2, 30.0 + k / 3) for k in range(1, 16)]
    group = {"jpeg": [False], "chroma_noise": [3.0], "trajectory": {"records": records}}
    blind, single = (selection.SUMMARY_RULES[k] for k in ("blind default", "single: ½ at 300 if noisy"))
    assert selection.summary_pick(group, *blind, 100) == [31.5]  # step 300 of 1,500: record 3, half of its output
    assert selection.summary_pick(group, *single, 100) == [31.0]  # half of its weights
    assert selection.summary_pick(group, *single, 50) == [32.0]  # every 50 steps: record 6
    assert selection.summary_pick(group, *single, 1000) == [30.0]  # no record at step 300: the start's
    short = {**group, "trajectory": {"records": records[:3]}}
    assert selection.summary_pick(short, *single, 100) == [30.0 + 2 / 3]  # a 200-step run: its last record
    uncapped = selection.SUMMARY_RULES["single default: + ½ final"]
    assert selection.summary_pick(group, *uncapped, 100) == [35.0]


def test_the_hr_rows_choose_the_best_blend_of_the_outputs_at_the_pick_or_anywhere(selection):
    def rec(psnr, heldout, consistency, mix):
        return {"psnr": psnr, "heldout": heldout, "heldout+gain": heldout, "consistency": consistency,
                "mix": {"0.2": mix[0], "0.5": mix[1]}}

    records = [rec([30.0, 40.0], 1.0, 0.10, [[30.0, 40.0]] * 2),
               rec([31.0, 39.0], 0.5, 0.09, [[30.2, 40.1], [30.6, 40.0]]),  # the default's pick
               rec([33.0, 39.5], 0.9, 0.20, [[30.4, 40.0], [31.5, 40.2]])]  # held out worse: not picked
    assert selection.with_hr(records, "pick") == [30.6, 40.0]  # ×0.5 beats ×0.2, the whole and the start
    assert selection.with_hr(records, "any") == [33.0, 39.5]  # the whole output, later
    worse = [records[0], rec([29.0, 39.0], 0.5, 0.09, [[29.9, 39.9], [29.5, 39.5]])]
    assert selection.with_hr(worse, "pick") == [30.0, 40.0]  # every blend loses: the start


def test_runs_must_name_known_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--presets", "",
                           "--runs", "trajectory,orcale", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode != 0 and "unknown orcale" in proc.stderr


def test_named_photos_replace_the_proxy_list_and_all_are_needed(tmp_path, monkeypatch):
    from PIL import Image

    proxy = _benchmark("adassr_proxy_photos", "adassr_proxy.py")
    files = {}
    for name, shade in (("Dark", 40), ("Light", 200), ("Small", 90)):
        files[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (40, 40) if name == "Small" else (80, 64), (shade, shade, shade)).save(files[name])
    monkeypatch.setattr(proxy, "wallpaper_photos",
                        lambda names=("Dark",): {n: files[n] for n in names if n in files})
    got = proxy.load_photos(1, 32, ["Light", "Dark"])
    assert [name for name, _ in got] == ["Light", "Dark"]  # their order, both of them, whatever n says
    assert got[0][1].shape == (1, 3, 32, 32) and got[0][1].mean() > got[1][1].mean()
    assert [name for name, _ in proxy.load_photos(1, 32)] == ["Dark"]  # no names: the proxy list
    with pytest.raises(SystemExit, match="need 2 wallpaper photos of >= 48 px"):
        proxy.load_photos(1, 48, ["Light", "Small"])  # Small is under the crop
    by_path = proxy.load_photos(1, 32, [str(files["Light"]), "Dark"])  # a path is named by its stem
    assert [name for name, _ in by_path] == ["Light", "Dark"]
