"""The metric table, ``evaluate`` and ``fetch`` are read from the metric classes: adding a
metric is one class and one line (``register_metric`` for a plugin)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

from ttasr._fs import cache_dir
from ttasr.errors import InputError
from ttasr.metrics import (
    BRISQUE,
    LPIPS,
    METRICS,
    NIQE,
    NRQM,
    PI,
    PSNRY,
    SSIMY,
    Metric,
    MetricFile,
    MetricInfo,
    MetricUnavailableError,
    evaluate,
    fetch,
    get_metric,
    list_metrics,
    psnr_y,
    register_metric,
    unregister_metric,
)

# --------------------------------------------------------------------------- toy metrics


class MeanAbsError(Metric):
    """A full-reference toy: mean |sr - hr| per image after the border crop."""

    name = "mean_abs_error"
    higher_is_better = False
    needs_reference = True
    description = "toy: mean absolute error"

    def __init__(self, crop_border: int = 0) -> None:
        self.crop_border = crop_border

    def per_image(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        hr = self._reference(hr)
        if c := self.crop_border:
            sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
        return (sr - hr).abs().flatten(1).mean(1).double()


TOY_FILE = MetricFile(metric="brightness", filename="toy_gain.txt", upstream_subdir="toy", argument="toy_gain")


class Brightness(Metric):
    """A no-reference toy that needs a file: mean brightness times a gain read from it."""

    name = "brightness"
    higher_is_better = True
    needs_reference = False
    files = (TOY_FILE,)
    description = "toy: gain x mean brightness"

    def __init__(self, toy_gain: str | os.PathLike[str] | None = None, *, crop_border: int = 0) -> None:
        from ttasr.metrics.files import resolve_metric_file

        self.gain = float(resolve_metric_file(TOY_FILE, toy_gain).read_text())
        self.crop_border = crop_border

    def per_image(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        return self.gain * sr.flatten(1).mean(1).double()


@pytest.fixture
def toys():
    """Register the toys for one test; the table is back to the built-ins afterwards."""
    before = list_metrics()
    for cls in (MeanAbsError, Brightness):
        register_metric(cls)
    yield
    for cls in (MeanAbsError, Brightness):
        unregister_metric(cls)
    assert list_metrics() == before


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 24, 24, generator=g)
    sr = (hr + 0.05 * torch.randn(2, 3, 24, 24, generator=g)).clamp(0, 1)
    return sr, hr


# --------------------------------------------------------------------------- built-ins


def test_table_lists_the_built_in_metrics_as_before():
    """Same rows, order, directions, file arguments and descriptions as the hand-written table."""
    assert dict(METRICS) == {
        "psnr_y": MetricInfo("psnr_y", True, True, (), "PSNR (dB) on the BT.601 Y channel, 8-bit, border cropped"),
        "ssim_y": MetricInfo("ssim_y", True, True, (), "SSIM on the Y channel, 11x11 Gaussian sigma 1.5"),
        "lpips": MetricInfo("lpips", False, True, ("lpips_backbone",), "LPIPS v0.1, AlexNet backbone"),
        "niqe": MetricInfo("niqe", False, False, ("niqe_params",), "NIQE with the original MATLAB pristine model"),
        "brisque": MetricInfo("brisque", False, False, ("brisque_params",), "BRISQUE (pyiqa, original SVM)"),
        "nrqm": MetricInfo("nrqm", True, False, ("nrqm_params",), "NRQM / Ma's score"),
        "pi": MetricInfo("pi", False, False, ("nrqm_params", "niqe_params"), "PIRM perceptual index ((10-NRQM)+NIQE)/2"),
    }
    assert list_metrics() == list(METRICS)
    assert METRICS.classes() == [PSNRY, SSIMY, LPIPS, NIQE, BRISQUE, NRQM, PI]
    assert all(issubclass(cls, Metric) for cls in METRICS.classes())
    assert get_metric("PSNR-Y") is PSNRY and get_metric("ssim_y") is SSIMY


def test_unknown_names_say_did_you_mean():
    with pytest.raises(InputError, match=r"unknown metric 'nique'\. Did you mean niqe.*Available: .*psnr_y"):
        get_metric("nique")
    with pytest.raises(InputError, match="Did you mean lpips"):
        fetch("lpip")
    sr, hr = _batch()
    with pytest.raises(InputError, match="unknown key 'niqe_param' in paths. Did you mean niqe_params"):
        evaluate(sr, hr, ("psnr_y",), paths={"niqe_param": "x.mat"})


def test_fetch_dispatches_to_each_metric(monkeypatch, tmp_path):
    """niqe goes through fetch_niqe_params (as `ttasr metrics fetch niqe`); pi fetches NIQE's
    file and returns NRQM's; metrics without files say so."""
    calls = []
    niqe_path = tmp_path / "niqe_modelparameters.mat"

    def fake_fetch_niqe_params(dest_dir=None, quiet=False, *, sdist=None):
        calls.append(quiet)
        return niqe_path

    # the module, not the function `ttasr.metrics.niqe` that shadows it as an attribute
    niqe_module = importlib.import_module("ttasr.metrics.niqe")
    monkeypatch.setattr(niqe_module, "fetch_niqe_params", fake_fetch_niqe_params)
    assert fetch("niqe", quiet=True) == niqe_path and calls == [True]
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    nrqm_file = cache_dir("metrics") / "NRQM_model.mat"
    nrqm_file.write_bytes(b"placed by hand")
    assert fetch("pi") == nrqm_file and calls == [True, False]
    assert fetch("NRQM") == nrqm_file
    with pytest.raises(MetricUnavailableError, match="brisque_svm_weights.pth"):
        fetch("brisque")
    with pytest.raises(InputError, match="ssim_y needs no parameter file"):
        fetch("ssim_y")


# --------------------------------------------------------------------------- a plugin metric


def test_a_registered_class_joins_the_table_evaluate_and_fetch(toys):
    assert list_metrics()[-2:] == ["mean_abs_error", "brightness"]
    assert METRICS["mean_abs_error"] == MetricInfo("mean_abs_error", False, True, (), "toy: mean absolute error")
    assert METRICS["brightness"].files == ("toy_gain",)

    sr, hr = _batch()
    res = evaluate(sr, hr, ("psnr_y", "mean_abs_error"), crop_border=2)
    expected = float((sr - hr)[..., 2:-2, 2:-2].abs().mean())
    assert res == {"psnr_y": pytest.approx(psnr_y(sr, hr, 2)), "mean_abs_error": pytest.approx(expected)}
    assert MeanAbsError(2).per_image(sr, hr).shape == (2,)
    with pytest.raises(InputError, match="mean_abs_error is a full-reference metric: pass hr="):
        evaluate(sr, None, ("mean_abs_error",))
    with pytest.raises(InputError, match="Did you mean mean_abs_error"):
        evaluate(sr, hr, ("mean_abs_eror",))
    with pytest.raises(InputError, match="mean_abs_error needs no parameter file"):
        fetch("mean-abs-error")


def test_a_plugin_file_is_taken_from_paths_or_the_cache(toys, tmp_path, monkeypatch):
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sr, _ = _batch()
    # absent: a clear error, or a skip that says why
    with pytest.raises(MetricUnavailableError, match="toy_gain="):
        evaluate(sr, None, ("brightness",))
    res = evaluate(sr, None, ("brightness",), skip_unavailable=True)
    assert dict(res) == {} and "toy_gain.txt" in res.skipped["brightness"]
    # given in paths, under the file's argument name
    given = tmp_path / "gain.txt"
    given.write_text("2.0")
    res = evaluate(sr, None, ("brightness",), paths={"toy_gain": given})
    assert res["brightness"] == pytest.approx(2.0 * float(sr.mean()))
    # placed in ttasr's cache: found there by evaluate and fetch
    cached = cache_dir("metrics") / "toy_gain.txt"
    cached.write_text("3.0")
    assert evaluate(sr, None, ("brightness",))["brightness"] == pytest.approx(3.0 * float(sr.mean()))
    assert fetch("brightness") == cached


def test_registration_refuses_bad_classes():
    class Abstract(Metric):
        name = "abstract"
        higher_is_better = True
        needs_reference = False

    class NoDirection(MeanAbsError):
        name = "no_direction"

    class Undirected(Metric):  # says nothing about higher_is_better
        name = "undirected"
        needs_reference = False

        def per_image(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
            return sr.flatten(1).mean(1)

    class Clash(MeanAbsError):
        name = "psnr_y"

    class BadName(MeanAbsError):
        name = "Mean-Abs"

    with pytest.raises(TypeError, match="not a concrete subclass"):
        register_metric(Abstract)
    with pytest.raises(TypeError, match="not a concrete subclass"):
        register_metric(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="higher_is_better"):
        register_metric(Undirected)
    with pytest.raises(ValueError, match="'psnr_y' is taken by PSNRY"):
        register_metric(Clash)
    with pytest.raises(ValueError, match="lower case"):
        register_metric(BadName)
    register_metric(NoDirection)  # inherits its direction: fine
    try:
        assert METRICS["no_direction"].higher_is_better is False
        register_metric(NoDirection)  # again: a no-op
        assert list_metrics().count("no_direction") == 1
    finally:
        unregister_metric(NoDirection)
    assert "no_direction" not in METRICS and METRICS.lookup("psnr_y") is PSNRY


def test_every_metric_class_scores_through_the_base_call():
    """``Metric.__call__`` is the batch mean of ``per_image`` for the classes evaluate builds."""
    sr, hr = _batch()
    for cls in (PSNRY, SSIMY):
        metric = cls.create(crop_border=1)
        assert isinstance(metric, Metric)
        assert metric(sr, hr) == pytest.approx(float(metric.per_image(sr, hr).mean()))
        with pytest.raises(InputError, match="pass hr="):
            metric(sr)
    pi = PI(nrqm_metric=lambda x: torch.tensor([6.0, 8.0]), niqe_metric=lambda x: torch.tensor([4.0, 2.0]))
    assert pi(sr) == pytest.approx(3.0) and pi(sr, hr) == pytest.approx(3.0)  # hr is ignored


def test_niqe_create_shares_one_built_metric(niqe_params_file):
    a = NIQE.create(0, {"niqe_params": niqe_params_file})
    b = NIQE.create(0, {"niqe_params": Path(niqe_params_file)})
    assert a is b and a.params_path == Path(niqe_params_file) and a.crop_border == 0
    assert NIQE.create(4, {"niqe_params": niqe_params_file}).crop_border == 4
