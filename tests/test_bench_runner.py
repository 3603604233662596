"""``run_bench``/``write_tables``: scores as the papers compute them, resume, torn lines,
sharding, unavailable metrics shown with their reason."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttasr.bench import BenchDataset, BenchItem, merge_results, plan_jobs, read_results, run_bench, shard_jobs
from ttasr.bench.runner import UNADAPTED, finished_keys
from ttasr.bench.tables import write_tables
from ttasr.errors import InputError
from ttasr.metrics import Metric, MetricUnavailableError, register_metric, unregister_metric

FAST = {"max_steps": 2, "batch_size": 2, "patch_size": 12, "stopping": "fixed"}


def toy_dataset(n: int = 2, size: int = 40, lr_only: int = 0) -> BenchDataset:
    """``n`` random HR images (``size`` px) and their 2x box-downscaled LR; the last
    ``lr_only`` items have no HR."""
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        hr = torch.rand(1, 3, size, size, generator=g)
        lr = F.avg_pool2d(hr, 2)
        keep = i < n - lr_only
        items.append(BenchItem(name=f"im{i}", lr=lr, hr=hr if keep else None, scale=2, dataset="toy",
                               lr_size=(size // 2, size // 2), hr_size=(size, size) if keep else None))
    return BenchDataset("toy", 2, items)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_are_y_psnr_and_ssim_with_the_scale_as_border(tiny_compact, tmp_path):
    """The bench's numbers are those of scikit-image on BT.601 Y (8-bit, border = scale).

    The metric functions themselves are checked against scikit-image on real photos in
    tests/test_metrics.py; this checks what the bench feeds them."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    import ttasr

    data = toy_dataset(1)
    run_bench([UNADAPTED], {"tiny": tiny_compact}, [data], [0], tmp_path, metrics=("psnr", "ssim"))
    [record] = read_results(tmp_path / "results-rank0.jsonl")
    assert record["status"] == "ok" and record["steps"] == 0

    item = data[0]
    sr = ttasr.enhance(tiny_compact, item.load_lr())

    def y(t: torch.Tensor) -> np.ndarray:  # MATLAB rgb2ycbcr luma of the 8-bit image, border 2 cut off
        rgb = (t[0].clamp(0, 1) * 255).round().double().permute(1, 2, 0).numpy()[2:-2, 2:-2]
        return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255

    a, b = y(sr), y(item.load_hr())
    assert record["metrics"]["psnr_y"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-6)
    ssim = structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    # skimage averages over the map with a 5-pixel margin removed; ours uses the valid map: same region
    assert record["metrics"]["ssim_y"] == pytest.approx(ssim, abs=1e-6)


def test_resume_skips_finished_jobs_and_reruns_only_the_missing_one(tiny_compact, tmp_path):
    models = {"tiny": tiny_compact}
    kwargs = dict(metrics=("psnr_y",), method_overrides={"internal": FAST})
    first = run_bench(["internal"], models, [toy_dataset(2)], [0, 1], tmp_path, **kwargs)
    path = first.results_file
    assert first.done == 6 and first.skipped == 0  # 2 items x (unadapted + 2 seeds)
    before = path.read_text()

    again = run_bench(["internal"], models, [toy_dataset(2)], [0, 1], tmp_path, **kwargs)
    assert (again.done, again.skipped) == (0, 6) and path.read_text() == before

    records = lines(path)
    dropped = records.pop(3)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    third = run_bench(["internal"], models, [toy_dataset(2)], [0, 1], tmp_path, **kwargs)
    assert (third.done, third.skipped) == (1, 5)
    assert lines(path)[-1]["key"] == dropped["key"]
    # the rerun job gives the same numbers: seeded
    assert lines(path)[-1]["metrics"] == pytest.approx(dropped["metrics"], abs=1e-9)
    assert len(merge_results(tmp_path)) == 6

    with pytest.raises(InputError, match="already has results"):
        run_bench(["internal"], models, [toy_dataset(2)], [0, 1], tmp_path, resume=False, **kwargs)


def test_a_torn_last_line_is_ignored_and_cut_before_appending(tiny_compact, tmp_path):
    models = {"tiny": tiny_compact}
    run_bench([UNADAPTED], models, [toy_dataset(2)], [0], tmp_path, metrics=("psnr_y",))
    path = tmp_path / "results-rank0.jsonl"
    records = lines(path)
    torn = json.dumps(records[1])[:25]
    path.write_text(json.dumps(records[0]) + "\n" + torn)  # killed while writing the second line

    assert [r["key"] for r in read_results(path)] == [records[0]["key"]]
    assert finished_keys(tmp_path) == {records[0]["key"]}
    run = run_bench([UNADAPTED], models, [toy_dataset(2)], [0], tmp_path, metrics=("psnr_y",))
    assert run.done == 1
    assert [r["key"] for r in lines(path)] == [r["key"] for r in records]  # every line parses again


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_sharding_covers_every_job_exactly_once(world):
    jobs = plan_jobs({"a": ["x", "y", "z"], "b": ["w"]}, ["m1", "m2"], [UNADAPTED, "adassr", "internal"], [0, 1, 2])
    assert len(jobs) == 4 * 2 * (1 + 3 + 3) and len({j.key for j in jobs}) == len(jobs)
    shards = [shard_jobs(jobs, r, world) for r in range(world)]
    keys = [j.key for s in shards for j in s]
    assert sorted(keys) == sorted(j.key for j in jobs)
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
    assert plan_jobs({"a": ["x", "y", "z"], "b": ["w"]}, ["m1", "m2"], [UNADAPTED, "adassr", "internal"],
                     [0, 1, 2]) == jobs  # deterministic
    with pytest.raises(InputError):
        shard_jobs(jobs, world, world)


def test_sharded_runs_merge_to_the_single_process_results(tiny_compact, tmp_path):
    kwargs = dict(metrics=("psnr_y", "ssim_y"), method_overrides={"internal": FAST})
    run_bench(["internal"], {"tiny": tiny_compact}, [toy_dataset(2)], [0], tmp_path / "one", **kwargs)
    for rank in range(3):
        run_bench(["internal"], {"tiny": tiny_compact}, [toy_dataset(2)], [0], tmp_path / "three",
                  shard=(rank, 3), **kwargs)
    one, three = merge_results(tmp_path / "one"), merge_results(tmp_path / "three")
    assert [r["key"] for r in one] == [r["key"] for r in three] and len(one) == 4
    assert {r["rank"] for r in three} == {0, 1, 2}
    for a, b in zip(one, three):
        assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-6)


class _Unavailable(Metric):
    name = "fake_iqa"
    higher_is_better: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False

    def __init__(self, crop_border: int = 0) -> None:
        raise MetricUnavailableError("fake_iqa needs fake_weights.pth: place it in $TTASR_HOME/metrics")

    def per_image(self, sr, hr=None):  # pragma: no cover - never built
        raise AssertionError


@pytest.fixture
def fake_metric():
    register_metric(_Unavailable)
    yield _Unavailable
    unregister_metric(_Unavailable)


def test_unavailable_metrics_keep_their_reason_in_the_json_and_the_tables(tiny_compact, tmp_path, fake_metric):
    data = toy_dataset(2, lr_only=1)
    run_bench([UNADAPTED], {"tiny": tiny_compact}, [data], [0], tmp_path, metrics=("psnr_y", "fake_iqa"))
    by_item = {r["item"]: r for r in lines(tmp_path / "results-rank0.jsonl")}
    assert by_item["im0"]["unavailable"] == {"fake_iqa": "fake_iqa needs fake_weights.pth: place it in "
                                                         "$TTASR_HOME/metrics"}
    assert set(by_item["im0"]["metrics"]) == {"psnr_y"}
    # no HR: the full-reference metric is unavailable for that item, not guessed
    assert by_item["im1"]["metrics"] == {} and "no HR reference" in by_item["im1"]["unavailable"]["psnr_y"]

    written = write_tables(tmp_path)
    md = written["results.md"].read_text()
    assert "| tiny | unadapted |" in md and "toy: fake_iqa ↓" in md and "toy: psnr_y ↑" in md
    assert "n/a [" in md and "fake_weights.pth" in md and "no HR reference" in md
    rows = written["results.csv"].read_text().splitlines()
    fake = next(r for r in rows if ",fake_iqa," in r)
    assert "fake_weights.pth" in fake and ",0,2," in fake  # n = 0, unavailable = 2


def test_tables_lay_out_methods_by_dataset_metric_with_paper_numbers(tiny_compact, tmp_path):
    run_bench(["internal"], {"tiny": tiny_compact}, [toy_dataset(2)], [0, 1], tmp_path, metrics=("psnr_y",),
              method_overrides={"internal": FAST})
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps({"internal": {"toy": {"psnr": 31.5}}}))
    written = write_tables(tmp_path, paper)
    records = merge_results(tmp_path)
    values = [r["metrics"]["psnr_y"] for r in records if r["method"] == "internal"]
    assert len(values) == 4  # 2 images x 2 seeds
    md = written["results.md"].read_text().splitlines()
    row = next(line for line in md if line.startswith("| tiny | internal |"))
    assert f"{np.mean(values):.4f} ± {np.std(values):.4f} (paper 31.5)" in row
    assert md.index(next(line for line in md if "| unadapted |" in line)) < md.index(row)  # baseline first
    timing = written["timing.md"].read_text()
    assert "| tiny | internal |" in timing and "process_max_rss" in timing and "cpu" in timing
    internal = [r for r in records if r["method"] == "internal"]
    assert all(r["steps"] == 2 and r["seconds"] > 0 and r["peak_memory_mb"] > 0 for r in internal)
    assert all(r["history"] and r["history"][-1]["step"] == 2 for r in internal)


def test_load_errors_are_error_lines_and_the_run_goes_on(tiny_compact, tmp_path):
    data = toy_dataset(2)
    bad = BenchItem(name="broken", lr=tmp_path / "missing.png", hr=None, scale=2, dataset="toy", lr_size=(20, 20))
    data.items.insert(0, bad)
    run = run_bench([UNADAPTED], {"tiny": tiny_compact}, [data], [0], tmp_path, metrics=("psnr_y",))
    assert run.done == 2 and len(run.errors) == 1 and "broken" in run.errors[0]
    [error] = [r for r in lines(run.results_file) if r["status"] == "error"]
    assert error["stage"] == "load" and error["item"] == "broken"
    assert "toy|broken|tiny|unadapted|-" not in finished_keys(tmp_path)  # retried on resume
    assert "Errors: 1 jobs failed" in write_tables(tmp_path)["results.md"].read_text()


def test_plots_show_curves_and_per_image_gains(tiny_compact, tmp_path):
    pytest.importorskip("matplotlib")
    from ttasr.bench.plots import write_plots

    run_bench(["internal"], {"tiny": tiny_compact}, [toy_dataset(2)], [0], tmp_path, metrics=("psnr_y",),
              method_overrides={"internal": FAST})
    written = write_plots(tmp_path)
    assert [p.name for p in written] == ["curves.png", "gain-psnr_y.png"]
    assert all(p.stat().st_size > 1000 for p in written)
