"""Three checks of the HR-aware paper (Zhang and Yao, 2024; METHODS §2) on CPU-sized data.

    .venv/bin/python benchmarks/hraware_checks.py fig7 [--reconstructor PATH|NAME] [--hr DIR] [--preset camera]
    .venv/bin/python benchmarks/hraware_checks.py fig8 [--reconstructor PATH|NAME] [--hr DIR]
    .venv/bin/python benchmarks/hraware_checks.py fig9 [--model span-x4] [--steps 600] [--presets ...] [--resume]
    .venv/bin/python benchmarks/hraware_checks.py fig7 fig8 fig9     # all three (also: no check named)
    .venv/bin/python benchmarks/hraware_checks.py --smoke             # tiny networks, seconds (the tests run it)

``--reconstructor`` is a file or a registered name (default: ``hraware-reconstructor-x<scale>``,
built from the offline photo set on first use, about 20 minutes on 2 cores). ``--smoke``
pretrains a tiny reconstructor for a few steps in this process and uses a tiny SPAN x4.

* **fig7** (paper Sec. 5.3, Fig. 7, eq. 12): HR images ``x`` never seen in pretraining (the
  held-out set below, or ``--hr``), LR ``y = degrade(x)`` with one fixed preset, blends
  ``x_t = t·Up(y) + (1 − t)·x`` for t in 0 ... 1, and the PSNR (RGB, in dB) of the LR
  reconstruction ``R(x_t, s ⊙ E_d(y), E_i(x_t))`` against ``y``: without the controller
  (``s = 1``), with it (``s = HQI(Up(y), x_t)``, eq. 8's finetuning form, no noise), and, for
  reference, with eq. 8's pretraining form ``1 − HQI``. A positive slope (dB per unit t, least
  squares on the means) means that a more degraded HR image reconstructs the LR better: the
  way an SR model can "cheat". Paper: the trend is there without the controller and gone
  with it. The paper trains two networks (with and without the controller);
  ``--baseline-reconstructor`` gives the ``s = 1`` row its own network, otherwise it is the
  same network with ``s = 1``.
* **fig8** (Sec. 5.3, Fig. 8): FAR (eq. 11, the network's ``φ, ψ`` and its ``E_c``, the norm it
  was pretrained with, no λ) of the held-out HR photos, clean and degraded by Gaussian blur
  (sigma 2 HR px), Gaussian noise (sigma 15/255) and JPEG (quality 30): the mean per condition,
  its ratio to clean, and the fraction of images whose FAR rises. Paper: FAR rises.
* **fig9** (Sec. 5.3, Fig. 9): the offline proxy benchmark of ``adassr_proxy.py`` (its photos
  and presets, one multi-image adaptation per preset): HRAware and LWay finetune ``--model``
  for ``--steps`` iterations at the same learning rate, scored every ``--eval-every`` steps
  (the weights the loop would return, i.e. the EMA weights) by PSNR-Y, SSIM-Y (border =
  scale) and NIQE against the HR photos, with the unadapted model's row. Paper (LPIPS there;
  LPIPS needs AlexNet weights this machine lacks): LWay degrades after about 400 steps,
  HRAware holds. With ``--blend 0.05,0.1`` every evaluation also scores the weights pulled
  back towards the start, ``Θ0 + λ(Θ − Θ0)`` (the methods' ``blend`` option), by PSNR-Y per
  photo, and the report adds a table of the mean and worst-photo gains per ``λ``.

Held-out HR set (default ``--hr heldout``): the pretraining photo set is scikit-image's
astronaut, coffee, chelsea, rocket and stereo_motorcycle plus the largest JPEG of every KDE
wallpaper (``ttasr/methods/hraware/hr_images.py``); the remaining KDE wallpapers are
renderings, not photos. So the held-out photos come from elsewhere: matplotlib's
grace_hopper.jpg, the four photos pyiqa installs in ``site-packages/tests/`` and the grey
scikit-image photos camera, grass, gravel and brick (as RGB), whichever are installed. All
are shrunk (antialiased) to ``--max-side`` and rounded to 8 bits. Files given with ``--hr``
that are wallpapers of the pretraining set are refused.

Results go to ``<out>/results.json`` (default ``outputs/hraware_checks``, with ``--smoke``
``outputs/hraware_checks-smoke``), one key per check, written atomically under a file lock
after each check (fig9: after each run), so that running one check keeps the others.
``fig9 --resume`` reuses the runs stored with the same settings. ``--report --merge DIR`` prints
one fig9 table over several folders (e.g. one process per method and preset, run side by side);
it refuses folders of other settings, photos or reconstructor.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import math
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adassr_proxy import load_photos
from selection import blended_psnr, replay

import ttasr
from ttasr._fs import atomic_write_bytes
from ttasr.adapters.base import Callback
from ttasr.adapters.stopping import NIQEPlateau, Stopping
from ttasr.degradations import (
    PRESETS,
    add_gaussian_noise,
    degrade,
    degrade_realesrgan,
    gaussian_blur,
    jpeg,
    quantize_8bit,
)
from ttasr.inference import enhance_tensor
from ttasr.methods.hraware import (
    LRReconstructionNetwork,
    controller,
    feature_alignment_regularizer,
    gram_descriptors,
    high_resolution_quality_indicator,
    pretrain_reconstructor,
    resolve_reconstructor,
)
from ttasr.methods.hraware.hqi import upsample_lr
from ttasr.methods.hraware.hr_images import offline_photo_files
from ttasr.metrics import NIQE, NIQE_MIN_SIZE, MetricUnavailableError, psnr_y, ssim_y

CHECKS = ("fig7", "fig8", "fig9")
FIG9_PRESETS = "optical-blur,camera,sensor-noise"
"""adassr_proxy.py's default presets."""
FIG8_CONDITIONS = ("clean", "blur", "noise", "jpeg")
SKIMAGE_GREY = ("camera", "grass", "gravel", "brick")
"""Grey scikit-image photos; the pretraining set uses its colour photos only."""
SMOKE_NET = {"embed_dim": 8, "degradation_channels": 4, "degradation_blocks": 1, "image_channels": 4,
             "image_blocks": 1, "reconstructor_channels": 4, "reconstructor_blocks": 1}


# ------------------------------------------------------------------------------ results file
@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / "results.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_results(out: Path) -> dict[str, Any]:
    path = out / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def update_results(out: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read, change and write ``<out>/results.json`` atomically, under a lock: checks run in
    other processes at the same time keep their keys."""
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        results = read_results(out)
        change(results)
        atomic_write_bytes(out / "results.json", json.dumps(results, indent=1).encode())


def store(out: Path, key: str, value: Any) -> None:
    def change(results: dict[str, Any]) -> None:
        results[key] = value

    update_results(out, change)


# ------------------------------------------------------------------------------ inputs
def _to_tensor(img: np.ndarray) -> torch.Tensor:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return torch.from_numpy(np.array(img[..., :3])).permute(2, 0, 1)[None].float() / 255.0


def heldout_sources() -> list[tuple[str, Callable[[], torch.Tensor]]]:
    """The default held-out photos (module docstring), colour ones first."""
    from PIL import Image
    from skimage import data

    def from_file(path: Path) -> Callable[[], torch.Tensor]:
        def load() -> torch.Tensor:
            return _to_tensor(np.asarray(Image.open(path).convert("RGB")))

        return load

    def grey(name: str) -> Callable[[], torch.Tensor]:
        def load() -> torch.Tensor:
            return _to_tensor(getattr(data, name)())

        return load

    items: list[tuple[str, Callable[[], torch.Tensor]]] = []
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if hopper.is_file():
            items.append(("matplotlib:grace_hopper", from_file(hopper)))
    except ImportError:
        pass
    pyiqa_photos = Path(sysconfig.get_paths()["purelib"]) / "tests" / "test_efficiency_img_dir"
    for p in sorted(pyiqa_photos.glob("*.jpg")):
        items.append((f"pyiqa-tests:{p.stem}", from_file(p)))
    items += [(f"skimage:{name}", grey(name)) for name in SKIMAGE_GREY]
    return items


def _training_wallpapers() -> set[Path]:
    return {p.parent.parent.parent.resolve() for p in offline_photo_files()}


def _constant(rgb: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: rgb


def user_sources(specs: Sequence[str]) -> list[tuple[str, Callable[[], torch.Tensor]]]:
    """``--hr`` folders, globs or files; wallpapers of the pretraining set are refused."""
    from ttasr.io import load_images

    used = _training_wallpapers()
    items: list[tuple[str, Callable[[], torch.Tensor]]] = []
    for spec in specs:
        for rec in load_images(spec, max_pixels=None):
            path = Path(rec.path).resolve() if rec.path is not None else None
            if path is not None and any(folder in path.parents for folder in used):
                raise SystemExit(f"{path} is a wallpaper of the pretraining photo set: not held out")
            items.append((str(path or rec.name), _constant(rec.rgb)))
    return items


def prepare_hr(img: torch.Tensor, max_side: int, multiple: int) -> torch.Tensor:
    """Shrunk (antialiased) to ``max_side``, cropped to a multiple of ``multiple``, 8-bit."""
    h, w = img.shape[-2:]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        img = F.interpolate(img, size=(max(1, round(h * f)), max(1, round(w * f))), mode="bicubic",
                            align_corners=False, antialias=True)
    h, w = img.shape[-2:]
    h2, w2 = h - h % multiple, w - w % multiple
    t, l = (h - h2) // 2, (w - w2) // 2
    return quantize_8bit(img[..., t:t + h2, l:l + w2].clamp(0, 1))


def hr_images(args: argparse.Namespace, scale: int) -> list[tuple[str, torch.Tensor]]:
    sources = heldout_sources() if args.hr == ["heldout"] else user_sources(args.hr)
    out = []
    for name, load in sources[: args.images_heldout]:
        x = prepare_hr(load(), args.max_side, 4 * scale)
        if min(x.shape[-2:]) >= 8 * scale:
            out.append((name, x))
    if not out:
        raise SystemExit(f"no HR image of at least {8 * scale} px per side in {args.hr}")
    return out


# ------------------------------------------------------------------------------ networks
def tiny_span(scale: int = 4) -> ttasr.SRModel:
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    return ttasr.load_model(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale))


def smoke_reconstructor(model: ttasr.SRModel) -> LRReconstructionNetwork:
    """A tiny x4 reconstructor pretrained for a few steps, E_c the tiny model's trunk."""
    from skimage import data

    photo = _to_tensor(data.astronaut())
    hr = [photo[..., 40 + 90 * i:104 + 90 * i, 140:204] for i in range(3)]
    r = pretrain_reconstructor(hr, model.scale, network=SMOKE_NET, max_steps=4, batch_size=2, hr_patch=32,
                               established_encoder="sr-trunk", sr_model=model, hqi_distance="encoder",
                               checkpoint_every=0, progress=False, device="cpu")
    return r.network


def reconstructor_record(net: LRReconstructionNetwork, where: str) -> dict[str, Any]:
    meta = net.metadata
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    enc = meta.get("established_encoder") or {}
    return {"source": where, "sha256": h.hexdigest()[:16], "config": net.config.to_dict(),
            "steps": meta.get("steps"), "controller": meta.get("controller"), "far_trained": meta.get("far_trained"),
            "hqi_distance": meta.get("hqi_distance"), "established_encoder": enc.get("spec")}


class Setup:
    """What every check shares: the SR model, the reconstructor(s), the device."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = tiny_span() if args.smoke else ttasr.load_model(args.model)
        self._net: LRReconstructionNetwork | None = None
        self.where = ""

    @property
    def net(self) -> LRReconstructionNetwork:
        if self._net is None:
            if self.args.smoke:
                t = time.perf_counter()
                self._net, self.where = smoke_reconstructor(self.model), "smoke: tiny, pretrained in-process"
                print(f"# smoke reconstructor pretrained in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            else:
                self._net, self.where = resolve_reconstructor(self.args.reconstructor, scale=self.model.scale,
                                                              device=self.args.device)
            self._net.to(self.device).eval().requires_grad_(False)
        return self._net

    @property
    def hqi_distance(self) -> str:
        """``--hqi-distance``, or the distance the reconstructor was pretrained with."""
        if self.args.hqi_distance != "recorded":
            return str(self.args.hqi_distance)
        return str(self.net.metadata.get("hqi_distance") or "auto")

    def hraware(self, **overrides: Any) -> ttasr.HRAware:
        """An HRAware adapter on :attr:`net`, set up (E_c and HQI's distance as in finetuning)."""
        a = ttasr.HRAware(self.model, reconstructor=self.net, hqi_distance=self.hqi_distance, progress=False,
                          device=str(self.device), **overrides)
        for module in a.frozen_networks().values():  # builds E_c and the distance
            module.to(self.device).eval().requires_grad_(False)
        return a


# ------------------------------------------------------------------------------ fig7
def psnr_rgb(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.clamp(0, 1) - b.clamp(0, 1)).square().mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


def make_lr(x: torch.Tensor, scale: int, preset: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: the HR image (USM-sharpened for Real-ESRGAN, its training target) and its LR."""
    if preset == "realesrgan":
        pair = degrade_realesrgan(x, scale, seed)
        return pair.hr, pair.lr
    return x, degrade(x, scale, preset, seed=seed).lr


def slope(ts: Sequence[float], values: Sequence[float]) -> float:
    return float(np.polyfit(np.asarray(ts, float), np.asarray(values, float), 1)[0])


FIG7_ROWS: dict[str, Literal["none", "finetuning", "pretraining"]] = {
    "s = 1 (no controller)": "none",
    "s = HQI (controller, finetuning eq. 8)": "finetuning",
    "s = 1 - HQI (pretraining form)": "pretraining",
}


def run_fig7(setup: Setup) -> dict[str, Any]:
    args, dev = setup.args, setup.device
    t0 = time.perf_counter()
    net, s = setup.net, setup.model.scale
    base_net, base_where = net, "the same network"
    if args.baseline_reconstructor:
        base_net, base_where = resolve_reconstructor(args.baseline_reconstructor, scale=s)
        base_net.to(dev).eval().requires_grad_(False)
    adapter = setup.hraware(far=False, controller_noise=0.0)
    if adapter.distance is None:
        raise SystemExit("fig7 needs HQI's distance")
    distance = adapter.distance.distance
    ts = [float(t) for t in args.ts.split(",")]
    images = hr_images(args, s)
    d = net.config.embed_dim
    rows: dict[str, list[list[float]]] = {k: [] for k in FIG7_ROWS}
    hqis: list[list[float]] = []
    with torch.no_grad():
        for i, (name, x0) in enumerate(images):
            x, y = make_lr(x0, s, args.preset, args.seed + i)
            x, y = x.to(dev), y.to(dev)
            up = upsample_lr(y, (int(x.shape[-2]), int(x.shape[-1])))
            per: dict[str, list[float]] = {k: [] for k in FIG7_ROWS}
            hq: list[float] = []
            for t in ts:
                xt = t * up + (1 - t) * x
                hqi = high_resolution_quality_indicator(xt, y, distance)
                hq.append(float(hqi.mean()))
                for row, stage in FIG7_ROWS.items():
                    if stage == "none":
                        rec = base_net(xt, y, 1.0)
                    else:
                        rec = net(xt, y, controller(hqi, stage, d, noise=0.0))
                    per[row].append(psnr_rgb(rec, y))
            for row in FIG7_ROWS:
                rows[row].append(per[row])
            hqis.append(hq)
    result: dict[str, Any] = {
        "config": {"preset": args.preset, "seed": args.seed, "t": ts, "max_side": args.max_side,
                   "hqi_distance": adapter.distance.description, "baseline_reconstructor": base_where},
        "reconstructor": reconstructor_record(net, setup.where),
        "images": [n for n, _ in images],
        "sizes": [list(x.shape[-2:]) for _, x in images],
        "hqi_mean": np.mean(hqis, axis=0).tolist(),
        "rows": {},
        "seconds": time.perf_counter() - t0,
    }
    for row, values in rows.items():
        arr = np.asarray(values)
        mean = arr.mean(axis=0)
        result["rows"][row] = {"psnr": values, "mean": mean.tolist(), "slope": slope(ts, mean),
                               "images_rising": float(np.mean([slope(ts, v) > 0 for v in arr]))}
    return result


def print_fig7(r: dict[str, Any]) -> None:
    c = r["config"]
    print(f"\n## fig7: LR reconstruction PSNR (RGB, dB) vs t of x_t = t*Up(y) + (1-t)*x; preset {c['preset']}, "
          f"{len(r['images'])} held-out images, HQI by {c['hqi_distance']}")
    ts = c["t"]
    head = f"{'controller':<40}" + "".join(f"{'t=' + format(t, 'g'):>9}" for t in ts)
    print(head + f"{'slope':>9}{'rising':>8}")
    for row, v in r["rows"].items():
        print(f"{row:<40}" + "".join(f"{m:>9.2f}" for m in v["mean"]) + f"{v['slope']:>+9.3f}"
              f"{100 * v['images_rising']:>7.0f}%")
    print(f"{'HQI(Up(y), x_t), mean':<40}" + "".join(f"{h:>9.3f}" for h in r["hqi_mean"]))
    print("slope: dB per unit t, least squares on the means (> 0: a more degraded HR reconstructs y better); "
          "rising: images whose own slope is > 0.")


# ------------------------------------------------------------------------------ fig8
def degrade_hr(x: torch.Tensor, condition: str, seed: int) -> torch.Tensor:
    """The fig8 conditions: HR size kept, 8-bit."""
    if condition == "clean":
        return x
    if condition == "blur":
        return quantize_8bit(gaussian_blur(x, 2.0).clamp(0, 1))
    if condition == "noise":
        g = torch.Generator().manual_seed(seed)
        return quantize_8bit(add_gaussian_noise(x, 15 / 255, generator=g).clamp(0, 1))
    if condition == "jpeg":
        return jpeg(x, 30)
    raise ValueError(condition)


def run_fig8(setup: Setup) -> dict[str, Any]:
    args, dev = setup.args, setup.device
    t0 = time.perf_counter()
    net, s = setup.net, setup.model.scale
    adapter = setup.hraware(far=True, controller=False)
    encoder = adapter.encoder
    if encoder is None:
        raise SystemExit("fig8 needs the reconstructor's E_c (FAR)")
    norm = (net.metadata.get("pretrain_config") or {}).get("far_norm", "l2")
    images = hr_images(args, s)
    far: dict[str, list[float]] = {c: [] for c in FIG8_CONDITIONS}
    with torch.no_grad():
        for i, (_, x) in enumerate(images):
            for cond in FIG8_CONDITIONS:
                xc = degrade_hr(x, cond, args.seed + i).to(dev)
                v = feature_alignment_regularizer(gram_descriptors(net.image_encoder(xc)), encoder.descriptors(xc),
                                                  net.alignment.phi, net.alignment.psi, norm=norm, reduction="none")
                far[cond].append(float(v[0]))
    clean = np.asarray(far["clean"])
    conds = {}
    for cond, values in far.items():
        arr = np.asarray(values)
        conds[cond] = {"far": values, "mean": float(arr.mean()), "median": float(np.median(arr)),
                       "ratio_to_clean": float(arr.mean() / clean.mean()),
                       "fraction_above_clean": float(np.mean(arr > clean))}
    return {
        "config": {"conditions": {"blur": "Gaussian sigma 2 HR px", "noise": "Gaussian sigma 15/255",
                                  "jpeg": "quality 30"}, "seed": args.seed, "max_side": args.max_side,
                   "norm": norm, "established_encoder": encoder.spec},
        "reconstructor": reconstructor_record(net, setup.where),
        "images": [n for n, _ in images],
        "conditions": conds,
        "seconds": time.perf_counter() - t0,
    }


def print_fig8(r: dict[str, Any]) -> None:
    c = r["config"]
    print(f"\n## fig8: FAR (eq. 11, {c['norm']}, E_c {c['established_encoder']}) of {len(r['images'])} held-out "
          "HR photos, clean vs degraded")
    print(f"{'condition':<12}{'mean FAR':>12}{'median':>12}{'vs clean':>10}{'> clean':>9}")
    for cond, v in r["conditions"].items():
        above = "-" if cond == "clean" else f"{100 * v['fraction_above_clean']:.0f}%"
        print(f"{cond:<12}{v['mean']:>12.4g}{v['median']:>12.4g}{v['ratio_to_clean']:>9.2f}x{above:>9}")
    print("'> clean': fraction of images whose FAR is higher degraded than clean.")


# ------------------------------------------------------------------------------ fig9
class Trajectory(Stopping, Callback):
    """Scores the weights the loop would return at every evaluation (PSNR-Y, SSIM-Y, NIQE
    against the HR photos) and the mean training loss since the last one; selects nothing,
    so the loop runs the whole budget and keeps the final weights."""

    name = "trajectory"
    scores_start = False

    def __init__(self, highs: list[torch.Tensor], niqe: NIQE | None, blends: Sequence[float] = ()) -> None:
        self.highs, self.niqe, self.blends = highs, niqe, tuple(blends)
        self._scratch: torch.nn.Module | None = None
        self.records: list[dict[str, Any]] = []
        self.eval_seconds = 0.0
        self._losses: list[float] = []
        self._pending: dict[str, Any] = {}

    def score(self, adapter: Any, network: torch.nn.Module, group: Any) -> float | None:
        t = time.perf_counter()
        current = adapter.model.with_weights(network)
        srs = [enhance_tensor(current, y, device=adapter.device) for y in group.tensors]
        self._pending = sr_metrics(srs, self.highs, adapter.model.scale, self.niqe)
        if self.blends:
            self._pending["blend"] = self.blended_psnr(adapter, network, group)
        self.eval_seconds += time.perf_counter() - t
        return None

    def blended_psnr(self, adapter: Any, network: torch.nn.Module, group: Any) -> dict[str, list[float]]:
        """PSNR-Y per photo of ``Θ0 + λ(Θ − Θ0)`` for each ``λ`` of ``blends`` (``Θ0``: the
        model the adapter started from, ``Θ``: the weights being scored)."""
        start = adapter.model.module.state_dict()
        now = {k: v.detach() for k, v in network.state_dict().items()}
        if self._scratch is None:
            self._scratch = copy.deepcopy(network)
        return blended_psnr(adapter, self._scratch, start, now, self.blends, group, self.highs)

    def on_step(self, adapter: Any, step: int, loss: float) -> None:
        self._losses.append(loss)

    def on_eval(self, adapter: Any, step: int, score: float | None) -> None:
        loss = float(np.mean(self._losses)) if self._losses else None
        self.records.append({"step": step, "loss": loss, **self._pending})
        self._losses, self._pending = [], {}


def sr_metrics(srs: list[torch.Tensor], highs: list[torch.Tensor], scale: int, niqe: NIQE | None) -> dict[str, Any]:
    out: dict[str, Any] = {"psnr": [psnr_y(sr, hr, scale) for sr, hr in zip(srs, highs)],
                           "ssim": [ssim_y(sr, hr, scale) for sr, hr in zip(srs, highs)]}
    out["niqe"] = [float(niqe(sr)) for sr in srs] if niqe is not None else None
    return out


def niqe_metric(args: argparse.Namespace, sr_side: int) -> tuple[NIQE | None, str]:
    if sr_side < NIQE_MIN_SIZE:
        return None, f"unavailable: SR outputs of {sr_side} px are under NIQE's {NIQE_MIN_SIZE} px"
    try:
        return NIQE(niqe_params=args.niqe_params, allow_download=not args.smoke), "available"
    except MetricUnavailableError as exc:
        return None, f"unavailable: {exc}"


def fig9_settings(args: argparse.Namespace, setup: Setup) -> dict[str, Any]:
    return {"model": "smoke:tiny-span-x4" if args.smoke else args.model, "steps": args.steps,
            "eval_every": args.eval_every, "images": args.photos or args.images, "size": args.size, "seed": args.seed,
            "lr": args.lr, "ema": args.ema, "batch_size": args.batch_size, "patch_size": args.patch_size,
            "reconstructor": args.reconstructor or "default", "smoke": args.smoke,
            **({"blend": args.blend} if args.blend else {})}


def fig9_photos(args: argparse.Namespace) -> list[tuple[str, torch.Tensor]]:
    try:
        return load_photos(args.images, args.size, args.photos)
    except SystemExit:
        if not args.smoke:
            raise
        from skimage import data  # smoke without the wallpapers: crops of one photo

        photo = _to_tensor(data.coffee())
        return [(f"coffee{i}", photo[..., :args.size, 100 * i:100 * i + args.size]) for i in range(args.images)]


def run_fig9(setup: Setup, out: Path) -> dict[str, Any]:
    args = setup.args
    model, s = setup.model, setup.model.scale
    settings = fig9_settings(args, setup)
    previous = read_results(out).get("fig9", {})
    reuse = args.resume and previous.get("settings") == settings
    photos = fig9_photos(args)
    niqe, niqe_note = niqe_metric(args, args.size)
    header = {"settings": settings, "photos": [n for n, _ in photos], "niqe": niqe_note,
              "reconstructor": reconstructor_record(setup.net, setup.where),
              "presets": previous.get("presets", {}) if reuse else {}}
    store(out, "fig9", header)
    methods = [m for m in args.methods.split(",") if m]
    for preset in [p for p in args.presets.split(",") if p]:
        deg = [degrade(hr, s, preset, seed=args.seed) for _, hr in photos]  # one camera: the same draw
        lows, highs = [d.lr for d in deg], [hr for _, hr in photos]
        rows = header["presets"].setdefault(preset, {})
        if "unadapted" not in rows:
            srs = [enhance_tensor(model, lr, device=setup.device) for lr in lows]
            rows["unadapted"] = sr_metrics(srs, highs, s, niqe)
            store(out, "fig9", header)
        for method in methods:
            if method in rows:
                continue
            traj = Trajectory(highs, niqe, args.blend)
            cfg: dict[str, Any] = {"max_steps": args.steps, "eval_every": args.eval_every, "progress": False,
                                   "seed": args.seed, "batch_size": args.batch_size,
                                   "patch_size": args.patch_size, "device": args.device}
            if args.lr is not None:
                cfg["lr"] = args.lr
            if method == "hraware":
                cfg["hqi_distance"] = setup.hqi_distance
            if args.ema != "default":
                cfg["ema_decay"] = None if args.ema == "none" else float(args.ema)
            t = time.perf_counter()
            adapter = ttasr.create_adapter(method, model, reconstructor=setup.net, stopping=traj, **cfg)
            adapter.fit(list(lows), callbacks=[traj])
            seconds = time.perf_counter() - t
            train = adapter.results[0].seconds - traj.eval_seconds
            rows[method] = {"records": traj.records, "seconds": seconds, "train_seconds": train,
                            "sec_per_step": train / max(1, adapter.results[0].steps),
                            "sec_per_eval": traj.eval_seconds / max(1, len(traj.records)),
                            "lr": getattr(adapter, "learning_rate", None), "ema_decay": adapter.config.ema_decay,
                            "describe": {k: v for k, v in adapter.describe().items() if "sha256" not in k}}
            store(out, "fig9", header)
            print(f"# fig9 {preset} / {method}: {seconds:.0f} s ({rows[method]['sec_per_step']:.3f} s/step, "
                  f"{rows[method]['sec_per_eval']:.1f} s/eval)", file=sys.stderr, flush=True)
    return header


def _mean(v: list[float] | None) -> float | None:
    return float(np.mean(v)) if v else None


LABELS = {"psnr": "PSNR-Y", "ssim": "SSIM-Y", "niqe": "NIQE", "loss": "loss"}


def niqe_rule_pick(niqe: Sequence[float]) -> tuple[int, int]:
    """AdaSSR's NIQE rule (the engine's :class:`NIQEPlateau`, its defaults) replayed on mean NIQEs
    (``niqe[0]``: the unadapted weights, then one per evaluation): (index of the weights it
    keeps, index of the evaluation at which it stops)."""
    return replay(NIQEPlateau(), list(niqe))


def print_fig9(r: dict[str, Any]) -> None:
    st = r["settings"]
    print(f"\n## fig9: {st['model']} finetuned {st['steps']} steps, scored every {st['eval_every']} "
          f"({len(r['photos'])} photos of {st['size']} px; means over the photos; NIQE: {r['niqe']})")
    for preset, rows in r["presets"].items():
        methods = [m for m in rows if m != "unadapted"]
        if not methods:
            continue
        steps = [rec["step"] for rec in rows[methods[0]]["records"]]
        steps_ = [0, *steps]
        print(f"\n### preset '{preset}'")
        print(f"{'metric':<8}{'method':<10}{'unadapted':>10}" + "".join(f"{st_:>9d}" for st_ in steps)
              + f"{'peak':>9}{'last-peak':>10}")
        for metric, fmt, higher in (("psnr", "9.3f", True), ("ssim", "9.4f", True), ("niqe", "9.3f", False),
                                    ("loss", "9.3g", False)):
            base = _mean(rows["unadapted"].get(metric)) if metric != "loss" else None
            for m in methods:
                got = [rec[metric] if metric == "loss" else _mean(rec.get(metric)) for rec in rows[m]["records"]]
                vals = [float(v) for v in got if v is not None]
                if len(vals) < len(got):
                    continue
                line = f"{LABELS[metric]:<8}{m:<10}"
                line += f"{base:>10.4f}" if base is not None else f"{'-':>10}"
                line += "".join(f"{v:>{fmt}}" for v in vals)
                if metric != "loss":
                    series = ([base] if base is not None else []) + vals
                    peak = max(series) if higher else min(series)
                    line += f"{peak:>{fmt}}{vals[-1] - peak:>+10.4f}"
                print(line)
        for m in methods:
            niqe = [_mean(rows["unadapted"].get("niqe"))] + [_mean(rec.get("niqe")) for rec in rows[m]["records"]]
            if any(v is None for v in niqe):
                continue
            kept, stop = niqe_rule_pick([float(v) for v in niqe])  # type: ignore[arg-type]
            psnr = [_mean(rows["unadapted"]["psnr"])] + [_mean(rec["psnr"]) for rec in rows[m]["records"]]
            print(f"  NIQE rule (AdaSSR's plateau, replayed on these evaluations), {m}: keeps step {steps_[kept]}, "
                  f"stops at {steps_[stop]}; PSNR-Y {psnr[kept] - psnr[0]:+.3f} dB against unadapted")
        print_blends(rows, methods, steps)
        print("  " + "; ".join(f"{m}: {rows[m]['sec_per_step']:.3f} s/step, {rows[m]['sec_per_eval']:.1f} s/eval, "
                               f"lr {rows[m]['lr']:g}, EMA {rows[m]['ema_decay']}" for m in methods))
    print("PSNR-Y/SSIM-Y: higher is better; NIQE, loss (the training loss since the previous evaluation): lower. "
          "peak: best of the unadapted row and the evaluations; last-peak: the final one minus it.")


def print_blends(rows: dict[str, Any], methods: Sequence[str], steps: Sequence[int]) -> None:
    """With ``--blend``: mean PSNR-Y gain over unadapted of the blended weights at every
    evaluation, and the worst photo's gain at the last one."""
    base = rows["unadapted"]["psnr"]
    for m in methods:
        recs = rows[m]["records"]
        lams = sorted({float(k) for rec in recs for k in rec.get("blend", {})})
        if not lams:
            continue
        print(f"  blended {m}, Θ0 + λ(Θ − Θ0): mean PSNR-Y gain (dB) at each evaluation; worst photo at the last")
        print(f"  {'λ':<6}" + "".join(f"{st:>9d}" for st in steps) + f"{'worst':>9}")
        for lam in [*lams, *([] if 1.0 in lams else [1.0])]:
            per = [rec["blend"][str(lam)] if lam in lams else rec["psnr"] for rec in recs]
            gains = [[a - b for a, b in zip(p, base)] for p in per]
            print(f"  {lam:<6g}" + "".join(f"{np.mean(g):>+9.3f}" for g in gains) + f"{min(gains[-1]):>+9.3f}")


# ------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checks", nargs="*", help=f"which checks: {', '.join(CHECKS)} (default: all three)")
    ap.add_argument("--smoke", action="store_true", help="tiny reconstructor and SR model, tiny data (seconds)")
    ap.add_argument("--reconstructor", default=None,
                    help="LR reconstruction network: a file or a registered name (default: "
                         "hraware-reconstructor-x<scale>, built on first use)")
    ap.add_argument("--model", default="span-x4", help="SR model (fig9 finetunes it; fig7/8 rebuild E_c with it)")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default outputs/hraware_checks, --smoke: outputs/hraware_checks-smoke)")
    ap.add_argument("--report", action="store_true", help="only print the tables of the saved results")
    ap.add_argument("--hqi-distance", default="recorded", choices=("recorded", "auto", "lpips", "encoder"),
                    help="HQI's distance (default: the one the reconstructor was pretrained with)")
    g = ap.add_argument_group("fig7 and fig8")
    g.add_argument("--hr", action="append", default=None,
                   help="held-out HR images: folder, glob or file, repeatable (default: 'heldout', the built-in set)")
    g.add_argument("--max-side", type=int, default=512, help="shrink HR images to this longer side")
    g.add_argument("--images-heldout", type=int, default=100, help="use at most this many HR images")
    g.add_argument("--preset", default="camera",
                   help=f"fig7's LR degradation: {', '.join(PRESETS)} or realesrgan (seed + image index)")
    g.add_argument("--ts", default="0,0.25,0.5,0.75,1", help="fig7's blend ratios t")
    g.add_argument("--baseline-reconstructor", default=None,
                   help="fig7: a network pretrained without the controller for the s = 1 row")
    g = ap.add_argument_group("fig9")
    g.add_argument("--steps", type=int, default=600)
    g.add_argument("--eval-every", type=int, default=100)
    g.add_argument("--presets", default=FIG9_PRESETS)
    g.add_argument("--methods", default="hraware,lway")
    g.add_argument("--images", type=int, default=6, help="photos of adassr_proxy.py")
    g.add_argument("--size", type=int, default=1024, help="HR crop side of the photos")
    g.add_argument("--photos", type=lambda v: [x for x in v.split(",") if x], default=None, metavar="A,B",
                   help="these wallpaper photos instead of the first --images (e.g. photos that chose nothing)")
    g.add_argument("--lr", type=float, default=None, help="learning rate of both methods (default: their tables)")
    g.add_argument("--ema", default="default", help="EMA decay of both methods: a number, 'none' or 'default'")
    g.add_argument("--blend", type=lambda v: [float(x) for x in v.split(",") if x], default=[], metavar="L1,L2",
                   help="also score the weights pulled back towards the start, Θ0 + λ(Θ − Θ0), at every "
                        "evaluation (PSNR-Y), for each λ")
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--patch-size", type=int, default=48)
    g.add_argument("--niqe-params", default=None, help="NIQE's parameter file (.mat)")
    g.add_argument("--resume", action="store_true", help="fig9: reuse the runs stored with the same settings")
    g.add_argument("--merge", action="append", default=[], type=Path, metavar="DIR",
                   help="with --report: add the fig9 runs of another --out folder (repeatable), e.g. methods or "
                        "presets that ran in parallel with the same settings")
    args = ap.parse_args(argv)
    bad = [c for c in args.checks if c not in CHECKS]
    if bad:
        ap.error(f"unknown check {bad[0]!r}: choose from {', '.join(CHECKS)}")
    args.checks = [c for c in CHECKS if c in args.checks] or list(CHECKS)
    if args.merge and not args.report:
        ap.error("--merge only combines results for --report")
    args.hr = args.hr or ["heldout"]
    if args.out is None:
        args.out = Path("outputs/hraware_checks-smoke" if args.smoke else "outputs/hraware_checks")
    if args.smoke:  # tiny everything; explicit options are overridden on purpose
        args.threads = args.threads or 1
        args.max_side, args.images_heldout = 64, 3
        args.steps, args.eval_every, args.presets = 4, 2, "camera"
        args.images, args.size, args.batch_size, args.patch_size = 2, 384, 2, 16
        args.device = args.device or "cpu"
    return args


PRINTERS = {"fig7": print_fig7, "fig8": print_fig8, "fig9": print_fig9}


def merge_fig9(mine: dict[str, Any], other: dict[str, Any], where: Path) -> dict[str, Any]:
    """Add the runs of another folder's fig9 (methods or presets run in parallel) to ``mine``.
    Refuses runs of other settings, photos or reconstructor: their rows would not be comparable."""
    for key in ("settings", "photos", "niqe"):
        if mine[key] != other[key]:
            raise SystemExit(f"{where}: its fig9 {key} {other[key]} differ from {mine[key]}; not merged")
    if mine["reconstructor"]["sha256"] != other["reconstructor"]["sha256"]:
        raise SystemExit(f"{where}: its fig9 used another reconstructor ({other['reconstructor']['sha256']}, "
                         f"not {mine['reconstructor']['sha256']}); not merged")
    presets = {p: dict(rows) for p, rows in mine["presets"].items()}
    for preset, rows in other["presets"].items():
        into = presets.setdefault(preset, {})
        for method, run in rows.items():
            into.setdefault(method, run)  # the unadapted rows are the same computation in both
    return {**mine, "presets": presets}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        setup = Setup(args)
        print(f"# {'smoke: ' if args.smoke else ''}{setup.model.architecture} x{setup.model.scale}, checks "
              f"{', '.join(args.checks)}, torch threads {torch.get_num_threads()}, device {setup.device}",
              file=sys.stderr, flush=True)
        for check in args.checks:
            t = time.perf_counter()
            if check == "fig7":
                store(out, "fig7", run_fig7(setup))
            elif check == "fig8":
                store(out, "fig8", run_fig8(setup))
            else:
                run_fig9(setup, out)
            print(f"# {check}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    results = read_results(out)
    for folder in args.merge:
        other = read_results(folder).get("fig9")
        if other is None:
            raise SystemExit(f"{folder / 'results.json'} holds no fig9 results to merge")
        results["fig9"] = merge_fig9(results["fig9"], other, folder) if "fig9" in results else other
    for check in args.checks:
        if check in results:
            PRINTERS[check](results[check])
    print(f"\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
