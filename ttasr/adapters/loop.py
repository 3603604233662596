"""`TrainingLoop`: the one loop that trains anything in ttasr.

Test-time adaptation, AdaSSR's external ADMM rounds and HR-aware's reconstructor
pretraining all run through it. Per step: a loss from a caller's function, backward, the
proximal gradient μ‖Θ − Θ₀‖² (AdaSSR eq. 15), optional gradient clipping, the optimizer
(Adam by default, or the caller's optimizer and scheduler), and an EMA of the weights
(eq. 16). Around the steps: evaluations with best-weight tracking and early stopping,
callbacks, a progress bar, atomic checkpoints that resume bit-exactly, and SIGINT/SIGTERM
handling that finishes the current step, keeps the best weights and saves the state.
"""

from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpointing
from .training import add_proximal_gradient_, ema_update_, snapshot

__all__ = ["LoopSettings", "LoopResult", "TrainingLoop", "Weights"]

log = logging.getLogger(__name__)

Weights = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from a config (any config with these fields works)."""

    max_steps: int
    lr: float = 1e-4
    ema_decay: float | None = None
    proximal_weight: float = 0.0
    grad_clip: float | None = None
    eval_every: int = 100
    checkpoint_every: int = 0
    progress: bool = True
    log_every: int | None = None
    """Steps between reads of the loss on the host (each read waits for the device). ``None``:
    every step on the CPU (where reading costs nothing), every 25 steps elsewhere. The loss
    of every step is still recorded, and a non-finite loss still stops the run."""
    desc: str = "train"

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> LoopSettings:
        names = [f for f in cls.__dataclass_fields__ if f != "desc"]
        values = {n: getattr(config, n) for n in names if hasattr(config, n)}
        return cls(**{**values, **overrides})


@dataclass
class LoopResult:
    """What one run of the loop produced."""

    best: Weights
    """The selected weights: best-scored, or the final ones when nothing was scored."""
    best_step: int
    best_score: float | None
    final: Weights | None
    """The weights at the last step when they differ from ``best`` (else ``None``)."""
    steps: int
    stopped_early: bool
    interrupted: bool
    signal: int | None = None
    """The signal that interrupted the run (SIGINT or SIGTERM), if one did."""
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    """The step the run resumed from (0 for a fresh run)."""
    started: float = 0.0
    """Wall-clock time (``time.time()``) when the steps began, to line up concurrent runs."""
    kept: dict[int, Weights] = field(default_factory=dict)
    """The returned weights at each of the loop's ``keep_steps`` it reached (also after a resume)."""


@contextmanager
def signals_caught(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` inside the block, then restore the previous
    handlers. Only the main thread can install handlers (elsewhere nothing changes), and a
    signal the process ignores (``SIG_IGN``: a background job of a script ignores SIGINT)
    stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) != signal.SIG_IGN}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Interrupt:
    """SIGINT/SIGTERM set a flag that the loop checks between steps, so a step is never
    cut in half; a second signal raises :class:`KeyboardInterrupt` at once."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, _frame: Any) -> None:
            if self.signal is not None:
                raise KeyboardInterrupt
            self.signal = signum
            log.warning("%s: finishing the current step, then stopping (again to abort)",
                        signal.Signals(signum).name)

        with signals_caught(handler):
            yield


class TrainingLoop:
    """Train ``network`` in place for ``settings.max_steps`` steps of ``loss_fn``.

    ``loss_fn(network, generator)`` draws a batch with ``generator`` and returns the loss.
    ``anchor`` is Θ₀ of the proximal term by parameter name (default: the starting weights).
    ``evaluate(model)`` scores the weights the loop would return (lower is better, or
    ``None``); ``should_stop(scores)`` ends the run early; ``improves(score, best, scores)``
    says whether a score replaces the best so far (default: strictly lower). ``state_file`` enables
    checkpoints every ``checkpoint_every`` steps and on interrupt; with ``resume`` the run
    continues from it, bit-exactly. ``keep_steps``: steps whose returned weights are kept beside
    the best (:attr:`LoopResult.kept`), for a method that may choose them afterwards.
    """

    def __init__(
        self,
        network: nn.Module,
        loss_fn: LossFn,
        settings: LoopSettings,
        *,
        generator: torch.Generator,
        anchor: Mapping[str, torch.Tensor] | None = None,
        optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        evaluate: Callable[[nn.Module], float | None] | None = None,
        score_start: bool = False,
        should_stop: Callable[[Sequence[float]], bool] | None = None,
        improves: Callable[[float, float, Sequence[float]], bool] | None = None,
        on_step: Callable[[int, float], None] | None = None,
        on_eval: Callable[[int, float | None], None] | None = None,
        state_file: Path | None = None,
        resume: bool = False,
        rng_state: tuple[Callable[[], torch.Tensor | None], Callable[[torch.Tensor | None], None]] | None = None,
        keep_steps: Sequence[int] = (),
    ) -> None:
        s = settings
        self.keep_steps = frozenset(keep_steps)
        self.network, self.loss_fn, self.settings = network, loss_fn, s
        self.generator = generator
        self.teacher = copy.deepcopy(network) if s.ema_decay is not None else None
        for p in self.teacher.parameters() if self.teacher is not None else ():
            p.requires_grad_(False)
        named = [(n, p) for n, p in network.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        if s.proximal_weight <= 0:
            self.anchors: list[torch.Tensor] = []
        elif anchor is None:
            self.anchors = [p.detach().clone() for p in self.params]
        else:
            self.anchors = [anchor[n].to(p.device, p.dtype) for n, p in named]
        self.optimizer = optimizer(self.params) if optimizer else torch.optim.Adam(self.params, lr=s.lr)
        self.scheduler = scheduler(self.optimizer) if scheduler else None
        self.evaluate, self.score_start, self.should_stop = evaluate, score_start, should_stop
        self.improves = improves or (lambda score, best, _scores: score < best)
        self.on_step, self.on_eval = on_step, on_eval
        self.state_file, self.resume = state_file, resume
        self.rng_state = rng_state
        """``(get, set)`` of a further random state that a resumed run must restore (e.g. a
        sampler's generator on the GPU)."""
        self.step = 0
        """Steps done so far (a loss function may read it, e.g. to seed a degradation)."""

    @property
    def result_model(self) -> nn.Module:
        """The weights the loop returns: the EMA weights when there is an EMA."""
        return self.teacher if self.teacher is not None else self.network

    # ------------------------------------------------------------------ state
    def _state(self, step: int, history: list[dict[str, float]], scores: list[float],
               best: Weights, best_score: float | None, best_step: int, kept: dict[int, Weights]) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "extra_rng": self.rng_state[0]() if self.rng_state is not None else None,
            "step": step, "history": history, "scores": scores,
            "best": best, "best_score": best_score, "best_step": best_step, "kept": kept,
        }

    def _save(self, *args: Any) -> None:
        if self.state_file is not None:
            checkpointing.save_state(self.state_file, self._state(*args))

    def _load(self) -> dict[str, Any] | None:
        if not self.resume or self.state_file is None:
            return None
        state = checkpointing.load_state(self.state_file)
        if state is None:
            log.warning("resume=True but no saved state matches this run (%s): starting from step 0",
                        self.state_file)
            return None
        self.network.load_state_dict(state["network"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.rng_state is not None:
            self.rng_state[1](state.get("extra_rng"))
        log.info("resumed from step %d (%s)", state["step"], self.state_file)
        return state

    # ------------------------------------------------------------------ the loop
    def _step(self) -> torch.Tensor:
        """One optimisation step; returns the loss as a detached device tensor (no host read)."""
        s = self.settings
        loss = self.loss_fn(self.network, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        add_proximal_gradient_(self.params, self.anchors, s.proximal_weight)
        if s.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.teacher is not None:
            ema_update_(self.teacher, self.network, s.ema_decay)  # type: ignore[arg-type]
        return loss.detach()

    def _log_interval(self) -> int:
        if self.settings.log_every is not None:
            return max(1, self.settings.log_every)
        device = self.params[0].device if self.params else torch.device("cpu")
        return 1 if device.type == "cpu" else 25

    def _flush(self, pending: list[tuple[int, torch.Tensor]], history: list[dict[str, float]]) -> float | None:
        """Read the pending losses in one transfer, record them, raise on a non-finite one.

        The non-finite check runs here rather than per step, so that the host does not wait
        for the device every step; the weights of the steps after the bad loss are discarded
        by the caller's error handling (the best weights so far are kept)."""
        if not pending:
            return None
        values = torch.stack([v.float() for _, v in pending]).cpu().tolist()
        pending_steps = [n for n, _ in pending]
        pending.clear()
        for n, v in zip(pending_steps, values):
            if not math.isfinite(v):
                lr = self.optimizer.param_groups[0]["lr"]
                raise FloatingPointError(f"{self.settings.desc}: loss became {v} at step {n}; lower lr (now {lr})")
        for n, v in zip(pending_steps, values):
            history.append({"step": n, "loss": v})
            if self.on_step is not None:
                self.on_step(n, v)
        return values[-1]

    def _score(self, step: int) -> float | None:
        score = self.evaluate(self.result_model) if self.evaluate is not None else None
        if self.on_eval is not None:
            self.on_eval(step, score)
        return score

    def run(self) -> LoopResult:
        s = self.settings
        t0, started = time.perf_counter(), time.time()
        step, history, scores = 0, [], []
        best, best_score, best_step = snapshot(self.result_model), None, 0
        kept: dict[int, Weights] = {}
        state = self._load()
        if state is not None:
            step, history, scores = state["step"], state["history"], state["scores"]
            best, best_score, best_step = state["best"], state["best_score"], state["best_step"]
            kept = dict(state.get("kept") or {})  # states saved before keep_steps have none
        resumed_from = step
        if step == 0 and self.score_start:
            score0 = self._score(0)
            if score0 is not None:
                scores.append(score0)
                history.append({"step": 0, "score": score0})
                best_score = score0

        stopped_early = interrupted = False
        guard = _Interrupt()
        bar = tqdm(total=s.max_steps, initial=min(step, s.max_steps), desc=s.desc, disable=not s.progress,
                   leave=False, dynamic_ncols=True)
        pending: list[tuple[int, torch.Tensor]] = []
        every = self._log_interval()
        try:
            with guard.installed():
                while step < s.max_steps:
                    self.step = step
                    pending.append((step + 1, self._step()))
                    step += 1
                    bar.update(1)
                    if step in self.keep_steps:
                        kept[step] = snapshot(self.result_model)
                    evaluating = step % s.eval_every == 0 or step == s.max_steps
                    saving = guard.signal is not None or (s.checkpoint_every and step % s.checkpoint_every == 0)
                    if evaluating or saving or step % every == 0:
                        lv = self._flush(pending, history)
                        bar.set_postfix(loss=f"{lv:.4f}", refresh=False)
                    if evaluating:
                        score = self._score(step)
                        if score is not None:
                            scores.append(score)
                            history[-1]["score"] = score
                            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", score=f"{score:.3f}")
                            if best_score is None or self.improves(score, best_score, scores):
                                best, best_score, best_step = snapshot(self.result_model), score, step
                            if self.should_stop is not None and self.should_stop(scores):
                                stopped_early = True
                                log.info("%s: early stop at step %d (best %.4f at %d)", s.desc, step,
                                         best_score, best_step)
                                break
                    if guard.signal is not None:
                        interrupted = True
                        self._save(step, history, scores, best, best_score, best_step, kept)
                        break
                    if s.checkpoint_every and step % s.checkpoint_every == 0:
                        self._save(step, history, scores, best, best_score, best_step, kept)
                self._flush(pending, history)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        if best_score is None and not stopped_early:
            best, best_step = snapshot(self.result_model), step
        final = snapshot(self.result_model) if best_step != step else None
        return LoopResult(
            best=best, best_step=best_step, best_score=best_score, final=final, steps=step,
            stopped_early=stopped_early, interrupted=interrupted,
            signal=guard.signal if interrupted and guard.signal is not None else
            (signal.SIGINT if interrupted else None),
            seconds=time.perf_counter() - t0, history=history, resumed_from=resumed_from, started=started, kept=kept,
        )
