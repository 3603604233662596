"""The commands: thin layers over the library."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger("ttasr")

from .outputs import (
    _check_folder,
    _check_model_path,
    _dtype,
    _prepare_outputs,
    _summary,
    _write_outputs,
)
from .signals import TRAP, UsageError, exit_code


# ---------------------------------------------------------------------- commands
def version() -> str:
    from .._version import __version__

    return __version__


def _require_inputs(args: argparse.Namespace) -> None:
    if not args.inputs:
        raise UsageError("no input images given: pass image files, folders or glob patterns")
    if not args.model:
        raise UsageError("no model given: pass -m PATH_OR_NAME (see `ttasr models`)")


def _load_records(args: argparse.Namespace) -> Any:
    """The input images, with ``--skip-bad`` and ``--max-pixels`` (0: no limit)."""
    from ..io import load_images

    limit = {} if args.max_pixels is None else {"max_pixels": args.max_pixels or None}
    return load_images(args.inputs, skip_bad=args.skip_bad, **limit)




def cmd_enhance(args: argparse.Namespace) -> int:
    from .. import load_model
    from ..inference import enhance

    _require_inputs(args)
    records = _load_records(args)
    _check_folder(args.output, "images")  # before a model download that may take minutes
    model = load_model(args.model, device=args.device)
    paths = _prepare_outputs(records, args.output, f"x{model.scale}")
    dtype = _dtype(args.dtype)

    def make(i: int) -> Any:  # one record at a time: an interrupt keeps the finished ones
        return enhance(model, records[i], tile=args.tile, overlap=args.overlap, dtype=dtype, device=args.device)

    written = _write_outputs(paths, range(len(records)), make)
    _summary(written, len(records), args.output, records.skipped)
    return 0


def _fit_signal(adapter: Any) -> int | None:
    """The signal that stopped ``adapter.fit`` early, if one did."""
    for r in adapter.results:
        if r.interrupted:
            return int(r.signal or signal.SIGINT)
    if adapter.interrupted:  # between images of a single-image fit, outside the training loop
        return int(TRAP.received or signal.SIGINT)
    return None


def _save_adapted(adapter: Any, path: Path) -> list[Path]:
    """``--save-model``: one file, or ``<stem>-<i>`` per image of a single-image fit over
    several images. The names do not depend on how many images were adapted before an
    interrupt, so a resumed run overwrites the same files."""
    if adapter.config.mode != "single" or len(adapter.records) == 1:
        return list(adapter.save(path))
    return [adapter.save(path.with_name(f"{path.stem}-{i:03d}{path.suffix}"), index=i)[0]
            for i in adapter.fitted_indices]


def cmd_adapt(args: argparse.Namespace) -> int:
    from ..methods.registry import create_adapter, list_adapters

    if args.list_methods:
        print("\n".join(list_adapters()))
        return 0
    _require_inputs(args)
    from .. import load_model
    from .._lookup import lookup
    from ..errors import InputError
    from ..inference import enhance
    from ..methods.registry import METHODS
    from .options import overrides_from

    try:
        cls = METHODS.get(args.method)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    base = cls.config_class()
    if args.preset is not None:
        try:
            base = lookup(cls.config_class.presets(), args.preset, f"{cls.name} preset")()
        except InputError as exc:
            raise UsageError(str(exc)) from None
    overrides = overrides_from(args, cls.config_class, base, args.set)
    if args.device:
        overrides["device"] = args.device
    # everything that can fail after adaptation is checked before it
    if args.save_model:
        _check_model_path(args.save_model)
    records = _load_records(args)
    paths = _prepare_outputs(records, args.output, cls.name)
    from ..bench import distributed

    shard = distributed.init_from_env()  # torchrun: multi-image adaptation in DDP
    if shard.world > 1:
        if overrides.get("mode", base.mode) != "multi":
            raise UsageError("under torchrun, adapt runs one multi-image adaptation in DistributedDataParallel: "
                             "use --mode multi (to adapt images one by one across processes, use ttasr bench)")
        if shard.device and "device" not in overrides:
            overrides["device"] = shard.device
    model = load_model(args.model)
    adapter = create_adapter(args.method, model, config=base, **overrides)
    try:
        adapter.fit(records, resume=args.resume)
        distributed.barrier(shard)  # no rank tears the group down while another still exchanges
    finally:
        distributed.finish(shard)
    if shard.rank != 0:  # every rank holds the same weights: rank 0 writes them
        return 0
    stopped_by = _fit_signal(adapter)
    done = adapter.fitted_indices
    for r in adapter.state["results"]:
        log.info("steps %d, best step %d, %.1f s%s", r["steps"], r["best_step"], r["seconds"],
                 ", interrupted" if r["interrupted"] else "")
    # the weights first: they cost the most to make again
    if args.save_model:
        for path in _save_adapted(adapter, args.save_model):
            log.info("saved adapted checkpoint %s", path)
    net_of = adapter.fitted_models()
    dtype = _dtype(args.dtype)

    def make(i: int) -> Any:
        return enhance(net_of(i), records[i], tile=args.tile, overlap=args.overlap, dtype=dtype)

    written = _write_outputs(paths, done, make)
    note = ""
    if stopped_by is not None:
        note = (f" (interrupted by {signal.Signals(stopped_by).name} after adapting {len(done)} of "
                f"{len(records)}; rerun with --resume to continue)")
    _summary(written, len(records), args.output, records.skipped, note)
    return exit_code(stopped_by) if stopped_by is not None else 0


def cmd_pretrain_reconstructor(args: argparse.Namespace) -> int:
    from .._lookup import lookup
    from ..errors import CheckpointError, InputError
    from ..methods.hraware.pretrain import PretrainConfig, pretrain_reconstructor
    from ..methods.hraware.reconstructors import (
        RECONSTRUCTORS,
        default_reconstructor_name,
        recipe_config,
        reconstructor_path,
    )
    from .options import overrides_from

    try:
        if args.default is not None:
            if args.preset is not None:
                raise UsageError("--default builds a registered recipe: leave out --preset (or build your own "
                                 "with --hr, --preset and -o)")
            name = args.default or default_reconstructor_name(args.scale or 4)
            base = recipe_config(name)
            if args.scale is not None and args.scale != base.network.scale:
                raise UsageError(f"{name} is a x{base.network.scale} reconstructor, not x{args.scale}")
            hr = args.hr or RECONSTRUCTORS[name].hr
            output = args.output or reconstructor_path(name)
        else:
            if not args.hr:
                raise UsageError("no HR images given: pass --hr DIR (or --hr photos), or --default")
            if args.output is None:
                raise UsageError("no output given: pass -o FILE.safetensors (or --default to build into the cache)")
            base = (lookup(PretrainConfig.presets(), args.preset, "pretraining preset")()
                    if args.preset is not None else PretrainConfig())
            hr, output = args.hr, args.output
    except (InputError, CheckpointError) as exc:
        raise UsageError(str(exc)) from None
    if Path(output).suffix.lower() != ".safetensors":
        raise UsageError(f"-o {output}: use a .safetensors suffix")
    _check_folder(Path(output).parent, "the reconstructor")
    overrides = overrides_from(args, PretrainConfig, base, args.set)
    if args.device:
        overrides["device"] = args.device
    config = base.replace(**overrides)
    if args.scale is not None and args.default is None:
        config = config.replace(network=config.network.replace(scale=args.scale))
    result = pretrain_reconstructor(hr, config=config, output=output, resume=args.resume)
    if result.interrupted:
        signum = int(result.signal or signal.SIGINT)
        log.warning("interrupted by %s at step %d of %d: rerun the same command with --resume to continue",
                    signal.Signals(signum).name, result.steps, config.max_steps)
        return exit_code(signum)
    log.info("wrote %s (%d steps, %.0f s, %.3f s/step)", result.path, result.steps, result.seconds,
             result.seconds_per_step)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import checkpoint_status, list_checkpoints, resolve_checkpoint

    if args.action == "fetch":
        if not args.name:
            raise UsageError("ttasr models fetch NAME (names: `ttasr models`)")
        path = resolve_checkpoint(args.name)
        print(path)
        return 0
    if args.offline:
        from ..offline import list_sources

        for src in list_sources():
            state = "convertible" if src.importable else ("not installed" if not src.installed else "refused")
            print(f"{src.key:<48} {src.architecture:<8} x{src.scale}  {state:<13} {src.description}")
            print(f"{'':<48} licence: {src.license}" + ("" if src.importable else f"; {src.note}"))
        return 0
    rows = [(s.name, s.architecture, f"x{s.scale}", checkpoint_status(s.name),
             s.license + (f"; offline: {s.offline_license}" if s.offline_license else ""))
            for s in list_checkpoints()]
    head = ("name", "arch", "scale", "resolves from", "licence")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from .. import metrics

    path = metrics.fetch(args.name, quiet=args.quiet)
    if not args.quiet:
        print(path)
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    """``ttasr kernel``: a camera's blur kernel from registered HR/LR pairs or chart photos, as .npy."""
    from ..io import load_images
    from ..pairs import (
        JpegSettings,
        calibrate_chart,
        calibrate_kernel,
        jpeg_settings_of,
        save_kernel,
    )

    if args.output.suffix.lower() != ".npy":
        raise UsageError(f"-o {args.output}: the kernel is written as .npy; give a path ending in .npy")
    if args.chart and (args.hr or args.lr):
        raise UsageError("give either --chart photos or --hr/--lr pairs, not both")
    if not args.chart and not (args.hr and args.lr):
        raise UsageError("give --hr and --lr (registered pairs), or --chart with photos of `ttasr chart`'s chart")
    if args.chart and args.scale is None:
        raise UsageError("--chart needs --scale: the model's scale, which the kernel is measured for")
    _check_folder(args.output.parent, "the kernel file")
    lr = load_images(args.chart or args.lr)
    jpeg: list = []
    for r in lr:
        from_file = jpeg_settings_of(r.path) if r.path is not None and args.jpeg != "none" else None
        # an LR saved losslessly after JPEG keeps the traces in its pixels, not its file
        jpeg.append(from_file if from_file is not None or args.jpeg != "auto" else "auto")
    if any(isinstance(j, JpegSettings) for j in jpeg):
        log.info("%d LR image(s) are JPEG: each candidate kernel's LR is compressed with that file's own "
                 "tables before the comparison (slower; compression would otherwise read as blur)",
                 sum(isinstance(j, JpegSettings) for j in jpeg))
    if args.chart:
        estimate = calibrate_chart([r.rgb for r in lr], args.scale, sides=args.sides, jpeg=jpeg,
                                   names=[r.name for r in lr], channels=args.channels)
        source = f"{len(lr)} chart photo(s)"
    else:
        hr = load_images(args.hr)
        if len(hr) != len(lr):
            raise UsageError(f"--hr gives {len(hr)} images and --lr {len(lr)}: give one HR per LR, in the same "
                             "order (folders are read sorted by name)")
        names = [f"{h.name} / {low.name}" for h, low in zip(hr, lr)]
        for name in names:
            log.info("pair: %s", name)
        estimate = calibrate_kernel([(h.rgb, low.rgb) for h, low in zip(hr, lr)], args.scale, jpeg=jpeg,
                                    crops=args.crops, channels=args.channels, names=names)
        source = f"{len(hr)} pair(s)"
    assert estimate.kernel is not None  # calibration always returns a kernel
    save_kernel(args.output, estimate.kernel)
    p = estimate.params
    if not args.quiet:
        shape = "MATLAB bicubic downscaling (the training degradation of most models)" if p["family"] == "bicubic" \
            else f"Gaussian sigma {p['sigma_x']:.3f} x {p['sigma_y']:.3f} HR px, angle {p['theta']:.3f} rad"
        print(f"kernel: {shape}, x{p['scale']}; fit RMSE {min(p['rmse_gaussian'], p['rmse_bicubic']):.3f} "
              f"levels (best Gaussian {p['rmse_gaussian']:.3f}, bicubic {p['rmse_bicubic']:.3f}) over "
              f"{source}, {p['jpeg']} modelled as JPEG")
        print(f"wrote {args.output}; use it with: ttasr adapt LR_DIR -m MODEL --kernel {args.output} (AdaSSR "
              f"then selects with the guarded held-out rule and returns half of the adaptation, a fifth where the "
              f"guard accepts nothing; with --mode single a fifth; --blend 1 all of it)")
        if p["family"] == "bicubic":
            print("this is the degradation bicubic-trained models learnt: AdaSSR keeps such a model as it is on "
                  "these images unless they show JPEG (--trained-on unknown adapts it anyway: a Real-ESRGAN "
                  "model, or noisy images)")
    return 0


def cmd_chart(args: argparse.Namespace) -> int:
    """``ttasr chart``: the printable chart of ``ttasr kernel --chart``."""
    from ..errors import InputError
    from ..io import save_image
    from ..pairs import chart_image

    if not 256 <= args.size <= 8192:
        raise UsageError(f"--size {args.size}: give 256 to 8192 pixels (the chart is drawn supersampled: "
                         "8192 takes a few minutes)")
    _check_folder(args.output.parent, "the chart")
    try:
        chart = chart_image(args.size, sides=args.sides, angle_deg=args.angle, dark=args.dark, light=args.light)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    save_image(chart[0], args.output)
    if not args.quiet:
        print(f"wrote {args.output} ({args.size} px); print it, photograph it with the settings of the images to "
              f"adapt to (the whole polygon in the frame, 100+ px across), then: ttasr kernel --chart PHOTO "
              f"--scale S -o kernel.npy")
    return 0


def _bench_rows(methods: list[str], variant_specs: list[str]) -> list[Any]:
    """``--method`` names and ``--variant LABEL=METHOD`` rows, in the order given."""
    from ..bench.variants import parse_variant
    from ..errors import InputError

    rows: list[Any] = list(methods)
    for spec in variant_specs:
        try:
            rows.append(parse_variant(spec))
        except InputError as exc:
            raise UsageError(str(exc)) from None
    return rows or ["unadapted"]


def _bench_overrides(items: list[str], rows: list[Any]) -> dict[str, dict[str, Any]]:
    """``--set ROW.KEY=VALUE`` items as ``{row label: {field: value}}``, converted like ``adapt``'s
    flags; a row is a method name or a ``--variant`` label."""
    from ..bench.variants import Variant
    from ..errors import InputError
    from ..methods.registry import METHODS
    from .options import overrides_from

    methods_of: dict[str, str] = {}
    try:
        for row in rows:
            if isinstance(row, Variant):
                methods_of[row.label] = METHODS.get(row.method).name
            elif row != "unadapted":
                methods_of[METHODS.get(row).name] = METHODS.get(row).name
    except InputError as exc:
        raise UsageError(str(exc)) from None
    by_row: dict[str, list[str]] = {}
    for item in items:
        head, eq, value = item.partition("=")
        label, dot, key = head.rpartition(".")
        if not eq or not dot or not label.strip() or not key.strip():
            raise UsageError(f"--set expects ROW.KEY=VALUE (e.g. adassr.max_steps=300), got {item!r}")
        label = label.strip()
        if label not in methods_of:
            try:
                label = METHODS.get(label).name  # a method's alias or other case
            except InputError:
                pass
        if label not in methods_of:
            raise UsageError(f"--set {label}...: no such row (rows: {', '.join(methods_of) or 'none'}; add "
                             f"--method NAME or --variant {label}=METHOD)")
        by_row.setdefault(label, []).append(f"{key.strip()}={value}")
    out = {}
    for label, sets in by_row.items():
        cls = METHODS.get(methods_of[label])
        try:
            out[label] = overrides_from(argparse.Namespace(), cls.config_class, cls.config_class(), sets)
        except (argparse.ArgumentTypeError, InputError) as exc:
            raise UsageError(f"--set {label}...: {exc}") from None
    return out


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import distributed
    from ..bench.runner import run_bench
    from ..bench.tables import load_paper_numbers, write_tables

    if not args.model:
        raise UsageError("no model given: pass -m NAME_OR_PATH (see `ttasr models`)")
    if not args.dataset:
        raise UsageError("no dataset given: pass --dataset SPEC, e.g. proxy:camera or realsr:/data/RealSR")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects comma-separated whole numbers, got {args.seeds!r}") from None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    rows = _bench_rows(args.method, args.variant)
    overrides = _bench_overrides(args.set, rows)
    paper = load_paper_numbers(args.paper_numbers) if args.paper_numbers else None  # bad file: fail first
    shard = distributed.init_from_env()
    try:
        run = run_bench(rows, args.model, args.dataset, seeds, args.output, metrics=metrics,
                        method_overrides=overrides, shard=(shard.rank, shard.world), resume=args.resume,
                        dataset_options=_key_values(args.dataset_option, "--dataset-option"),
                        device=args.device or shard.device, tile=args.tile or None, keep_crops=args.crops,
                        workers_per_gpu=args.workers_per_gpu)
        log.info(run.summary())
        distributed.barrier(shard)
        if shard.rank == 0:
            from ..bench.plots import write_plots

            written = write_tables(args.output, paper, oracle=args.oracle)
            plots = write_plots(args.output, next((m for m in ("psnr_y", *metrics) if m in metrics), "psnr_y"))
            report = []
            if args.report:  # after the tables and plots, which it embeds
                from ..bench.report import write_report

                report.append(write_report(args.output))
            log.info("wrote %s", ", ".join(str(p) for p in [*written.values(), *plots, *report]))
            if not args.quiet:
                print(written["results.md"].read_text(encoding="utf-8"))
    finally:
        distributed.finish(shard)
    return 1 if run.errors else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    report = run_demo(output=args.output, model=args.model, method=args.method, steps=args.steps,
                      n_images=args.images, size=args.size)
    print(report)
    return 0
