"""`AdapterConfig`: the fields every adapter understands, with the same meaning everywhere.

Defaults follow AdaSSR's implementation details (Sec. IV-A) unless the help says otherwise;
methods subclass it to change defaults and add their own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal

from .._config import PlainConfig, config_with, option
from .stopping import STOPPING_RULES

__all__ = ["AdapterConfig", "config_with"]


@dataclass(frozen=True)
class AdapterConfig(PlainConfig):
    """Shared adaptation settings. Subclasses change defaults and add fields."""

    max_steps: int = option(1500, "Optimiser steps at most (AdaSSR T_step = 1,500). Not part of the run "
                            "id, so a longer budget resumes a shorter run.", low=0, affects_result=False)
    lr: float = option(1e-4, "Adam learning rate (AdaSSR: 1e-4).", low=0)
    batch_size: int = option(4, "Pairs per step (AdaSSR: 4).", low=1)
    patch_size: int = option(48, "Side of the model-input patch in LR pixels; targets are patch_size x "
                             "scale for SR pairs. Not in the paper: 48 is the usual x4 LR patch.", low=4)
    ema_decay: float | None = option(0.999, "EMA decay of the weights (AdaSSR eq. 16: 0.999); None trains "
                                     "without EMA and returns the raw weights.", low=0, high=1, high_open=True)
    proximal_weight: float = option(0.0, "mu of the proximal term mu*||theta - theta0||^2 to the starting "
                                    "weights (AdaSSR eq. 15).", low=0)
    grad_clip: float | None = option(None, "Clip the global gradient norm to this value (None: no clipping).",
                                     low=0, low_open=True)
    eval_every: int = option(100, "Steps between evaluations of the stopping rule.", low=1)
    stopping: str = option("fixed", "Stopping and selection rule: 'fixed' runs max_steps and keeps the "
                           "final weights; 'niqe-plateau' is AdaSSR's NIQE rule (Sec. IV-A-1); 'consistency' "
                           "the back-projection error of the LR; 'heldout' the error on held-out internal pairs; "
                           "'heldout-guarded' the same, where weights with a larger back-projection error than "
                           "the start's cannot win (for a measured kernel); 'guarded-fallback' the same, but "
                           "while the guard accepts no weights the held-out pick stands in; 'auto' the method's "
                           "own choice "
                           "('fixed' unless its help says otherwise).", choices=STOPPING_RULES)
    niqe_min_delta: float = option(0.05, "niqe-plateau: stop when NIQE decreased by less than this ...", low=0)
    niqe_patience: int = option(3, "... this many evaluations in a row (AdaSSR: 0.05, 3).", low=1)
    heldout_min_gain: float = option(0.0, "heldout(-guarded): a new best must lower the held-out error by this "
                                     "fraction of the start's error.", low=0)
    heldout_patience: int | None = option(None, "heldout(-guarded): stop after this many evaluations without a "
                                          "new best "
                                          "(None: run the whole budget).", low=1)
    niqe_params: str | None = option(None, "Path of NIQE's pristine parameters (.mat); default: the cache "
                                     "of `ttasr metrics fetch niqe`, then pyiqa's.", affects_result=False)
    blend: float | Literal["auto"] = option(
        1.0, "Fraction of the adaptation returned: the weights are Θ0 + blend·(Θ − Θ0), Θ the selected weights, "
        "Θ0 the pretrained ones (ours; 1 returns Θ). Near weights that were already right a loss shrinks like "
        "blend², a gain only like blend; measured in benchmarks/RESULTS.md ('Blending'). 'auto': the method's own choice "
        "(AdaSSR: by where its kernel comes from).", low=0, high=1)
    blend_space: Literal["weights", "outputs", "auto"] = option(
        "weights", "Where blend applies (ours): 'weights' returns one network, Θ0 + blend·(Θ − Θ0); 'outputs' "
        "enhances with blend·N_Θ(y) + (1 − blend)·N_Θ0(y), two forward passes, an output that cannot fall below "
        "both ends (a weight blend can); save() then writes the adapted network Θ itself and ttasr.load_model "
        "restores the blend from the file's metadata (benchmarks/RESULTS.md, 'Blending the outputs'). 'auto': the method's own "
        "choice (AdaSSR: outputs with stopping 'guarded-fallback'; the others: weights).")
    seed: int = option(0, "Seed of every random choice (crops, augmentations, noise).")
    per_image_seeds: bool = option(True, "mode='single': image i of a fit draws with seed + 1000003*i (True), or "
                                   "with seed itself, as if adapted alone (False; `ttasr bench` uses this, so that "
                                   "an image's result does not depend on the images fitted with it).")
    device: str | None = option(None, "cuda, cuda:1, cpu, ...; None picks CUDA when available.",
                                affects_result=False)
    mode: Literal["multi", "single"] = option("multi", "multi: one adaptation over all images (one camera); "
                                              "single: each image adapted on its own from the start.")
    checkpoint_every: int = option(0, "Save a resumable training state every this many steps (0: never).",
                                   low=0, affects_result=False)
    checkpoint_dir: str | None = option(None, "Where resumable states go; default $TTASR_HOME/runs/<method>.",
                                        affects_result=False)
    keep_state: bool = option(False, "Keep the training state after a successful fit (it is about 5x the "
                              "model; by default it is removed once the fit is complete).", affects_result=False)
    progress: bool = option(True, "Show progress bars.", affects_result=False)
    amp: Literal["auto", "off", "bf16"] = option(
        "auto", "Mixed precision of the training forward/backward: 'bf16' autocast (weights, optimiser and "
        "EMA stay float32), 'off', or 'auto' (off on the CPU; on CUDA, see the GPU table in benchmarks/RESULTS.md for the "
        "measured choice).")
    channels_last: bool | None = option(None, "Train in the channels_last memory format (None: on CUDA, off "
                                        "on the CPU).")
    compile: bool = option(False, "torch.compile the model's forward for training (static shapes; the "
                           "first steps pay the compilation).", affects_result=False)
    log_every: int | None = option(None, "Steps between host reads of the loss (None: every step on the CPU, "
                                   "every 25 on a GPU, which otherwise waits for the host each step).", low=1,
                                   affects_result=False)
    workers_per_gpu: int = option(1, "mode='single': adapt this many images at once in worker processes "
                                  "sharing the device (on the CPU, processes sharing the cores). Each image's "
                                  "result equals the one-at-a-time run.", low=1, affects_result=False)

    @classmethod
    def presets(cls) -> dict[str, Callable[[], AdapterConfig]]:
        """Named starting configurations besides the default (e.g. AdaSSR's ``paper``)."""
        return {}
