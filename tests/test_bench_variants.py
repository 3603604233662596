"""Bench rows beyond plain methods: labelled variants with overrides, one adaptation over a
whole dataset (``mode="multi"``), the true kernel of proxy items, workers, per-image table."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import ttasr
from ttasr.bench import TRUE_KERNEL, BenchDataset, BenchItem, Variant, plan_jobs, read_results, run_bench, shard_jobs
from ttasr.bench.jobs import plan_units
from ttasr.bench.runner import UNADAPTED, _batches
from ttasr.bench.tables import per_image_table, write_tables
from ttasr.bench.variants import parse_variant, resolve_variants
from ttasr.errors import InputError
from ttasr.metrics import psnr_y

FAST = {"max_steps": 3, "batch_size": 2, "patch_size": 12, "stopping": "fixed"}


def blurred_dataset(n: int = 3, size: int = 40, kernels: list[torch.Tensor | None] | None = None) -> BenchDataset:
    """HR noise images, blurred by a Gaussian and 2x decimated; the kernel is kept in ``info``."""
    g = torch.Generator().manual_seed(1)
    x = torch.arange(5, dtype=torch.float32) - 2
    gauss = torch.exp(-(x[:, None] ** 2 + x[None] ** 2) / 2)
    gauss = gauss / gauss.sum()
    items = []
    for i in range(n):
        kernel = gauss if kernels is None else kernels[i]
        hr = torch.rand(1, 3, size, size, generator=g)
        k = gauss if kernel is None else kernel
        lr = F.conv2d(F.pad(hr, (2, 2, 2, 2), mode="reflect"), k.expand(3, 1, 5, 5), groups=3)[..., ::2, ::2]
        items.append(BenchItem(name=f"im{i}", lr=lr.clamp(0, 1), hr=hr, scale=2, dataset="blur",
                               lr_size=(size // 2, size // 2), hr_size=(size, size),
                               info={} if kernel is None else {"kernel": kernel}))
    return BenchDataset("blur", 2, items)


def ok_records(tmp_path) -> list[dict]:
    return [r for r in read_results(tmp_path / "results-rank0.jsonl") if r["status"] == "ok"]


def test_a_multi_image_row_adapts_once_over_the_dataset_and_equals_a_direct_fit(tiny_compact, tmp_path):
    data = blurred_dataset(3)
    row = Variant("internal, one camera", "internal", dict(FAST, mode="multi"))
    run = run_bench([row], {"tiny": tiny_compact}, [data], [5], tmp_path, metrics=("psnr_y",), keep_crops=0)
    assert run.done == 6 and not run.errors  # 3 unadapted + 3 images of the one adaptation

    records = {r["item"]: r for r in ok_records(tmp_path) if r["method"] == row.label}
    assert sorted(records) == ["im0", "im1", "im2"]
    assert {r["mode"] for r in records.values()} == {"multi"}
    assert {r["images_per_fit"] for r in records.values()} == {3}
    assert {r["steps"] for r in records.values()} == {3}  # one run of 3 steps, not three

    lows = [item.load_lr() for item in data]
    adapter = ttasr.create_adapter("internal", tiny_compact, **FAST, mode="multi", seed=5, progress=False).fit(lows)
    for item, lr in zip(data, lows):
        sr = ttasr.enhance(adapter.adapted_model(), lr, progress=False)
        assert records[item.name]["metrics"]["psnr_y"] == pytest.approx(psnr_y(sr, item.load_hr(), 2), abs=1e-6)
    # and the shared weights are not the per-image ones
    single = ttasr.create_adapter("internal", tiny_compact, **FAST, mode="single", seed=5, progress=False).fit(lows[:1])
    assert single.adapted_model().weights_hash() != adapter.adapted_model().weights_hash()


def test_the_true_kernel_is_filled_in_and_missing_kernels_are_error_lines(tiny_compact, tmp_path):
    oracle = Variant("oracle", "adassr", {**FAST, "kernel_estimator": "given", "kernel": TRUE_KERNEL,
                                          "attention": "none", "mode": "multi"})
    run = run_bench([oracle], {"tiny": tiny_compact}, [blurred_dataset(2)], [0], tmp_path / "a",
                    metrics=("psnr_y",), keep_crops=0)
    assert run.done == 4 and not run.errors

    without = blurred_dataset(2, kernels=[None, None])
    run = run_bench([oracle], {"tiny": tiny_compact}, [without], [0], tmp_path / "b", metrics=("psnr_y",),
                    keep_crops=0)
    assert len(run.errors) == 2 and all(TRUE_KERNEL in e and "im0" in e for e in run.errors)

    x = torch.zeros(5, 5)
    x[2, 2] = 1
    mixed = blurred_dataset(2, kernels=[x, torch.full((5, 5), 1 / 25)])
    run = run_bench([oracle], {"tiny": tiny_compact}, [mixed], [0], tmp_path / "c", metrics=("psnr_y",),
                    keep_crops=0)
    assert len(run.errors) == 2 and "different kernels" in run.errors[0]


def test_units_keep_one_adaptation_in_one_process_and_cover_every_job_once():
    jobs = plan_jobs({"d": ["a", "b", "c"], "e": ["x"]}, ["m"], [UNADAPTED, "multi", "single"], [0, 1])
    units = plan_units(jobs, lambda job: job.method == "multi")
    multi = [u for u in units if u[0].method == "multi"]
    assert [[j.item for j in u] for u in multi] == [["a", "b", "c"], ["a", "b", "c"], ["x"], ["x"]]
    assert all(len(u) == 1 for u in units if u[0].method != "multi")
    for world in (1, 2, 3):
        for group in (None, lambda unit: unit[0].method):
            keys = [j.key for r in range(world) for u in shard_jobs(units, r, world, group) for j in u]
            assert sorted(keys) == sorted(j.key for j in jobs)


def test_units_of_each_method_are_dealt_to_every_rank():
    """Per dataset the units are [unadapted, slow, fast, unadapted]: a plain deal gives every
    slow adaptation to rank 1; dealt method by method, both ranks get their share."""
    jobs = plan_jobs({f"d{k}": ["a", "b"] for k in range(5)}, ["m"], [UNADAPTED, "slow", "fast"], [0])
    units = plan_units(jobs, lambda job: job.method != UNADAPTED)
    plain = [[u[0].method for u in shard_jobs(units, r, 2)] for r in range(2)]
    assert plain[0].count("slow") == 0 and plain[1].count("slow") == 5
    dealt = [[u[0].method for u in shard_jobs(units, r, 2, group=lambda unit: unit[0].method)] for r in range(2)]
    assert sorted([dealt[0].count("slow"), dealt[1].count("slow")]) == [2, 3]
    assert sorted([dealt[0].count("fast"), dealt[1].count("fast")]) == [2, 3]
    assert dealt[0].count(UNADAPTED) == dealt[1].count(UNADAPTED) == 5
    assert shard_jobs(units, 0, 2, group=lambda unit: unit[0].method)[0] is units[0]  # job order kept


def test_resume_redoes_a_multi_image_unit_but_writes_only_the_missing_record(tiny_compact, tmp_path):
    row = Variant("one camera", "internal", dict(FAST, mode="multi"))
    args = ([row], {"tiny": tiny_compact}, [blurred_dataset(3)], [0], tmp_path)
    run_bench(*args, metrics=("psnr_y",), keep_crops=0)
    path = tmp_path / "results-rank0.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    dropped = next(r for r in records if r["method"] == "one camera" and r["item"] == "im1")
    path.write_text("".join(json.dumps(r) + "\n" for r in records if r is not dropped))

    again = run_bench(*args, metrics=("psnr_y",), keep_crops=0)
    assert (again.done, again.skipped) == (1, 5)
    redone = read_results(path)[-1]
    assert redone["item"] == "im1" and redone["metrics"] == dropped["metrics"]


def test_batches_group_single_image_jobs_for_workers():
    jobs = plan_jobs({"d": ["a", "b", "c"]}, ["m"], [UNADAPTED, "ada"], [0])
    units = plan_units(jobs, lambda job: False)
    variants = {UNADAPTED: Variant(UNADAPTED, UNADAPTED), "ada": Variant("ada", "adassr")}
    pending = {j.key for j in jobs}
    assert [len(b) for b in _batches(units, pending, variants, 1)] == [1] * 6
    batches = _batches(units, pending, variants, 2)
    assert [[j.item for j in b] for b in batches if b[0].method == "ada"] == [["a", "b"], ["c"]]
    assert sum(len(b) for b in batches) == 6
    pending.discard(jobs[1].key)  # ada on "a" is done
    assert [[j.item for j in b] for b in _batches(units, pending, variants, 2) if b[0].method == "ada"] == [["b", "c"]]


def test_workers_give_the_one_at_a_time_results(tiny_compact, tmp_path):
    data = blurred_dataset(2, size=32)
    kwargs = dict(metrics=("psnr_y",), method_overrides={"internal": FAST}, keep_crops=0)
    run_bench(["internal"], {"tiny": tiny_compact}, [data], [0], tmp_path / "one", **kwargs)
    run_bench(["internal"], {"tiny": tiny_compact}, [data], [0], tmp_path / "two", workers_per_gpu=2, **kwargs)
    one = {r["key"]: r["metrics"]["psnr_y"] for r in read_results(tmp_path / "one" / "results-rank0.jsonl")}
    two = {r["key"]: r["metrics"]["psnr_y"] for r in read_results(tmp_path / "two" / "results-rank0.jsonl")}
    assert one.keys() == two.keys() and all(two[k] == pytest.approx(v, abs=1e-6) for k, v in one.items())
    assert {r["images_per_fit"] for r in read_results(tmp_path / "two" / "results-rank0.jsonl")
            if r["method"] == "internal"} == {2}


def test_per_image_table_gives_gains_and_the_share_of_the_oracle():
    def rec(method, item, value):
        return {"dataset": "d", "item": item, "model": "m", "method": method, "metrics": {"psnr_y": value}}

    records = [rec(UNADAPTED, "a", 30.0), rec(UNADAPTED, "b", 32.0), rec("oracle", "a", 31.0), rec("oracle", "b", 33.0),
               rec("ours", "a", 30.5), rec("ours", "b", 32.3), rec("ours", "a", 30.7)]  # two seeds on "a"
    text = per_image_table(records, "psnr_y", ["d"], [("m", UNADAPTED), ("m", "oracle"), ("m", "ours")], "oracle")
    row = next(line for line in text.splitlines() if "| ours |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:] == ["30.60", "32.30", "31.45", "+0.450", "45 %"]
    oracle_row = next(line for line in text.splitlines() if "| oracle |" in line)
    assert "+1.000" in oracle_row and oracle_row.rstrip(" |").endswith("n/a")


def test_variant_labels_and_overrides_are_checked():
    assert parse_variant("oracle = adassr") == Variant("oracle", "adassr")
    with pytest.raises(InputError, match="LABEL=METHOD"):
        parse_variant("adassr")
    with pytest.raises(InputError, match="mode"):
        Variant("x", "adassr", {"mode": "both"})
    rows = resolve_variants(["AdaSSR", Variant("fast", "internal", {"max_steps": 5})], {"fast": {"seed": 1}})
    assert list(rows) == [UNADAPTED, "adassr", "fast"] and rows["fast"].overrides == {"max_steps": 5, "seed": 1}
    with pytest.raises(InputError, match="not benchmarked"):
        resolve_variants(["adassr"], {"fast": {}})
    with pytest.raises(InputError, match="labelled"):
        resolve_variants([Variant("a", "adassr"), Variant("a", "internal")])


def test_cli_variants_and_their_settings(tiny_compact, tmp_path):
    from ttasr.cli import main
    from ttasr.models.saving import save_model

    path = tmp_path / "tiny.safetensors"
    save_model(ttasr.load_model(tiny_compact), path)
    data = tmp_path / "data"
    for sub in ("HR", "LR"):
        (data / sub).mkdir(parents=True)
    for item in blurred_dataset(2, size=32):
        ttasr.save_image(item.load_hr(), data / "HR" / f"{item.name}.png")
        ttasr.save_image(item.load_lr(), data / "LR" / f"{item.name}.png")
    out = tmp_path / "out"
    code = main(["-q", "bench", "-m", str(path), "--dataset", f"paired:{data}", "--variant", "camera=internal",
                 "--set", "camera.mode=multi", "--set", "camera.max_steps=2", "--set", "camera.patch_size=12",
                 "--set", "camera.batch_size=2", "--set", "camera.stopping=fixed", "--no-report", "--crops", "0",
                 "--oracle", "camera", "-o", str(out)])
    assert code == 0
    records = [r for r in read_results(out / "results-rank0.jsonl") if r["method"] == "camera"]
    assert len(records) == 2 and {(r["mode"], r["steps"]) for r in records} == {("multi", 2)}
    assert "| camera |" in (out / "per_image.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variants"]["camera"] == {"method": "internal", "mode": "multi", "overrides": {
        "mode": "multi", "max_steps": 2, "patch_size": 12, "batch_size": 2, "stopping": "fixed"}}
    write_tables(out)  # the tables can be rewritten from the files alone

    assert main(["-q", "bench", "-m", str(path), "--dataset", f"paired:{data}", "--set", "camera.mode=multi",
                 "-o", str(tmp_path / "x")]) == 2


def test_the_report_shows_the_per_image_table_and_one_curve_per_adaptation(tiny_compact, tmp_path):
    from ttasr.bench import write_report
    from ttasr.bench.plots import curve_records
    from ttasr.bench.results import merge_results

    rows = [Variant("camera", "internal", dict(FAST, mode="multi")), Variant("each", "internal", FAST)]
    run_bench(rows, {"tiny": tiny_compact}, [blurred_dataset(3)], [0], tmp_path, metrics=("psnr_y",), keep_crops=0)
    write_tables(tmp_path, oracle="camera")
    curves = curve_records([r for r in merge_results(tmp_path) if r["status"] == "ok"])
    assert sorted((r["method"], r["mode"]) for r in curves) == [("camera", "multi")] + [("each", "single")] * 3
    page = write_report(tmp_path).read_text()
    assert "<h2>Per image</h2>" in page and "<h4>blur</h4>" in page and "% of oracle" in page
