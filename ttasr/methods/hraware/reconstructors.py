"""Named LR reconstruction networks: a default to start from, built locally and cached.

No pretrained reconstructor is published for HR-aware adaptation, so ttasr builds its own
from a recipe: :data:`RECONSTRUCTORS` maps a name (``hraware-reconstructor-x4``) to a
pretraining preset and HR source (the offline photo set), and the result is cached as
``$TTASR_HOME/reconstructors/<name>.safetensors``. ``ttasr pretrain-reconstructor
--default`` builds it ahead of time; :func:`resolve_reconstructor` builds it on first use,
with a log message and a progress bar (an interrupted build resumes next time).

The recipe is a plain value: tests and users can replace an entry of the dict, e.g. with
a tiny network for a test, or with the ``paper`` preset on DIV2K for a GPU build.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._fs import cache_dir
from ..._lookup import did_you_mean
from ...errors import CheckpointError, InputError
from .hr_images import PHOTO_SET
from .networks import LRReconstructionNetwork

if TYPE_CHECKING:
    from .pretrain import PretrainConfig

__all__ = ["RECONSTRUCTORS", "ReconstructorRecipe", "build_reconstructor", "default_reconstructor_name",
           "recipe_config", "reconstructor_path", "resolve_reconstructor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructorRecipe:
    """How a named reconstructor is built: :func:`~.pretrain.pretrain_reconstructor` with
    ``preset``, ``scale``, ``hr`` and ``overrides`` (config fields)."""

    name: str
    scale: int
    description: str
    preset: str = "cpu-small"
    hr: str = PHOTO_SET
    overrides: Mapping[str, Any] = field(default_factory=dict)


RECONSTRUCTORS: dict[str, ReconstructorRecipe] = {
    r.name: r
    for r in [
        ReconstructorRecipe("hraware-reconstructor-x4", 4, "cpu-small recipe on the offline photo set, x4; "
                            "E_c: SPAN x4's first trunk block"),
        ReconstructorRecipe("hraware-reconstructor-x2", 2, "cpu-small recipe on the offline photo set, x2; "
                            "E_c: SPAN x4's first trunk block"),
    ]
}


def default_reconstructor_name(scale: int) -> str:
    """The registered reconstructor for ``scale`` (``hraware-reconstructor-x{scale}``)."""
    name = f"hraware-reconstructor-x{scale}"
    if name not in RECONSTRUCTORS:
        raise InputError(
            f"there is no default LR reconstruction network for x{scale} (registered: "
            f"{', '.join(sorted(RECONSTRUCTORS))}): pretrain one with `ttasr pretrain-reconstructor --hr DIR "
            f"--scale {scale} -o FILE` and pass reconstructor=FILE")
    return name


def reconstructor_path(name: str) -> Path:
    """Where the named reconstructor is cached."""
    return cache_dir("reconstructors") / f"{name}.safetensors"


def _recipe(name: str) -> ReconstructorRecipe:
    try:
        return RECONSTRUCTORS[name]
    except KeyError:
        raise CheckpointError(
            f"{name!r} is neither an LR reconstruction network file nor a registered reconstructor."
            f"{did_you_mean(name, RECONSTRUCTORS)} Registered: {', '.join(sorted(RECONSTRUCTORS))}") from None


def recipe_config(name: str, **overrides: Any) -> PretrainConfig:
    """The pretraining config of the named reconstructor, with ``overrides`` on top."""
    from .pretrain import PretrainConfig

    recipe = _recipe(name)
    base = PretrainConfig.presets()[recipe.preset]()
    settings = {**dict(recipe.overrides), **overrides}
    network = settings.pop("network", None)
    net_cfg = base.network.replace(**network) if isinstance(network, dict) else (network or base.network)
    return base.replace(network=net_cfg.replace(scale=recipe.scale), **settings)


def build_reconstructor(name: str, *, progress: bool = True, device: str | None = None,
                        resume: bool = True, **overrides: Any) -> Path:
    """Pretrain the named reconstructor from its recipe into the cache; returns its path.

    Resumes an interrupted build by default. Raises :class:`KeyboardInterrupt` when
    interrupted (its state is kept for the next try).
    """
    from .pretrain import pretrain_reconstructor

    recipe = _recipe(name)
    path = reconstructor_path(name)
    settings: dict[str, Any] = {**overrides, "progress": progress}
    if device is not None:
        settings["device"] = device
    config = recipe_config(name, **settings)
    log.warning("building the LR reconstruction network %r (%s, %d steps): pretraining once, then cached at %s. "
                "Ctrl-C stops it; it resumes next time.", name, recipe.description, config.max_steps, path)
    result = pretrain_reconstructor(recipe.hr, config=config, output=path, resume=resume)
    if result.interrupted:
        raise KeyboardInterrupt(f"building {name} was interrupted at step {result.steps}")
    log.warning("built %s in %.0f s (%d steps)", path, result.seconds, result.steps)
    return path


def resolve_reconstructor(
    source: LRReconstructionNetwork | str | Path | None,
    *,
    scale: int,
    build: bool = True,
    progress: bool = True,
    device: str | None = None,
) -> tuple[LRReconstructionNetwork, str]:
    """``(network, where)`` for ``source``: a network as is, a file, a registered name
    (cached, else built when ``build``), or ``None`` (the default for ``scale``). The
    network's scale must be ``scale``."""
    if isinstance(source, LRReconstructionNetwork):
        net, where = source, "a network object"
    else:
        text = str(source) if source is not None else default_reconstructor_name(scale)
        file = Path(text).expanduser()
        if file.is_file():
            net, where = LRReconstructionNetwork.load(file), str(file)
        else:
            if source is not None and (file.suffix or "/" in text):
                if text not in RECONSTRUCTORS:
                    raise CheckpointError(f"no LR reconstruction network at {file}: the file does not exist")
            recipe = _recipe(text)
            path = reconstructor_path(recipe.name)
            if not path.is_file():
                if not build:
                    raise CheckpointError(f"the reconstructor {text!r} is not built yet: run `ttasr "
                                          f"pretrain-reconstructor --default {text}`")
                build_reconstructor(text, progress=progress, device=device)
            net, where = LRReconstructionNetwork.load(path), text
    if net.scale != scale:
        raise InputError(f"the LR reconstruction network ({where}) is for x{net.scale}, the model is x{scale}: "
                         f"use a x{scale} reconstructor")
    return net, where
