"""The ``ttasr`` command line: a thin layer over the library.

    ttasr enhance photos/ -m span-x4 -o out/            super-resolve, tiled
    ttasr adapt photos/ --method adassr -m span-x4 -o out/ --save-model adapted.safetensors
    ttasr adapt photos/ --method hraware -m span-x4 -o out/    HR-aware LR-reconstruction finetuning
    ttasr pretrain-reconstructor --hr DIR -o rec.safetensors   its LR reconstruction network
    ttasr pretrain-reconstructor --default              build the default one (cpu-small, offline photos)
    ttasr models                                        named checkpoints and where they resolve
    ttasr models fetch span-x4                          put a checkpoint into the cache
    ttasr metrics fetch niqe                            NIQE's pristine parameters, offline
    ttasr demo                                          offline before/after demo on real photos
    ttasr bench --method adassr -m span-x4 --dataset proxy:camera --seeds 0,1 -o bench-out
                                                        benchmark: JSON lines per image, paper tables

Errors print one line; add --verbose for the traceback. Exit code 0 on success, 1 on
errors, 2 on bad usage, 130 on Ctrl-C (SIGINT), 143 on SIGTERM. An interrupted command
keeps what it finished: the images already written stay, and an interrupted adaptation
still saves the best weights so far and writes the images it adapted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from .parser import DEFAULT_METHOD, build_parser
from .signals import TRAP, Terminated, UsageError, exit_code

log = logging.getLogger("ttasr")

__all__ = ["main"]


def _method_of(argv: Sequence[str]) -> str:
    """The ``--method`` of an ``adapt`` command line, so that its flags can be built."""
    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return DEFAULT_METHOD


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_method_of(argv), __doc__)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with TRAP.installed():
            return int(args.func(args) or 0)
    except (UsageError, argparse.ArgumentTypeError) as exc:
        print(f"ttasr: usage error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"ttasr: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return exit_code(signum)
    except Exception as exc:  # one clean line unless --verbose
        if args.verbose:
            raise
        from ..errors import TTASRError

        kind = "error" if isinstance(exc, (TTASRError, OSError)) else f"error ({type(exc).__name__})"
        print(f"ttasr: {kind}: {exc}", file=sys.stderr)
        return 1

