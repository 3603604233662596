"""Stopping and selection rules: objects any method can use.

The loop evaluates a rule every ``eval_every`` steps on the weights it would return (the
EMA weights when there is an EMA). A rule scores them (lower is better, ``None`` when it
does not score), says when to stop, and the loop keeps the best-scored weights (the
starting weights are a candidate when :attr:`Stopping.scores_start`).

* :class:`FixedBudget`: no scores; runs ``max_steps`` and returns the final weights.
* :class:`NIQEPlateau`: AdaSSR's rule (Sec. IV-A-1), NIQE of the SR output.
* :class:`BackProjection`: consistency of the real LR with the SR output degraded again.
* :class:`HeldOutPairs`: the error on internal pairs whose targets were never trained on.
* :class:`GuardedHeldOut`: the held-out rule, where weights that explain the real LR worse
  than the start (back-projection) cannot win; for a measured kernel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from ..errors import InputError

if TYPE_CHECKING:
    from ..pairs.jpeg_trace import JpegTrace
    from .base import Adapter, ImageGroup

__all__ = ["Stopping", "FixedBudget", "NIQEPlateau", "BackProjection", "HeldOutPairs", "GuardedHeldOut",
           "GuardedFallback", "back_projection_error", "holdout_mask", "niqe_plateau", "stopping_from_config", "STOPPING_RULES"]


class Stopping(ABC):
    """A stopping and selection rule. Subclasses set :attr:`name` and implement :meth:`score`."""

    name: ClassVar[str]
    scores_start: ClassVar[bool] = False
    """Score the starting weights before the first step, so that they can win."""

    def prepare(self, adapter: Adapter[Any], group: ImageGroup) -> None:  # noqa: B027 - optional hook
        """Check, before any training, that the rule can run on ``group`` (fail early)."""

    def begin(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> None:
        """Called once per run with the starting weights, after the method's own preparation
        and before any training, also when a run resumes (optional hook)."""

    @abstractmethod
    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        """A score of ``network`` on ``group`` (lower is better); ``None``: not scored."""

    def should_stop(self, scores: Sequence[float]) -> bool:
        """Whether to stop, given every score so far (the start's first, if scored)."""
        return False

    def improves(self, score: float, best: float, scores: Sequence[float]) -> bool:
        """Whether ``score`` replaces the ``best`` so far (``scores``: all so far, this one last)."""
        return score < best

    def describe(self) -> dict[str, str]:
        return {"stopping": self.name}


class FixedBudget(Stopping):
    """Run the whole budget and keep the final weights."""

    name = "fixed"

    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        return None


def niqe_plateau(scores: Sequence[float], min_delta: float = 0.05, patience: int = 3) -> bool:
    """AdaSSR Sec. IV-A-1: true when NIQE decreased by less than ``min_delta``
    ``patience`` times in a row ("if the decrease in the metric is less than 0.05 for three
    consecutive times, we terminate the training"). An increase counts as a decrease below
    ``min_delta``."""
    run = 0
    for prev, cur in zip(scores, scores[1:]):
        run = run + 1 if prev - cur < min_delta else 0
    return run >= patience


class NIQEPlateau(Stopping):
    """AdaSSR's rule: mean NIQE of the SR outputs every ``eval_every`` steps, stop on a
    plateau (:func:`niqe_plateau`), keep the lowest, the unadapted weights included."""

    name = "niqe-plateau"
    scores_start = True
    min_output_side: ClassVar[int] = 384
    """NIQE's 96-px blocks with its 2x downscaled second scale need outputs this large."""

    def __init__(self, min_delta: float = 0.05, patience: int = 3, params: str | None = None) -> None:
        self.min_delta, self.patience, self.params = min_delta, patience, params
        self._niqe: Any = None

    def prepare(self, adapter: Adapter[Any], group: ImageGroup) -> None:
        from ..metrics import NIQE

        s = adapter.model.scale
        small = [tuple(y.shape[-2:]) for y in group.tensors if min(y.shape[-2:]) * s < self.min_output_side]
        if small:
            raise InputError(
                f"NIQE early stopping needs SR outputs of at least {self.min_output_side} px per side; LR images "
                f"of size {small[0]} give {min(small[0]) * s} px. Use larger images, or stopping='fixed'"
            )
        if self._niqe is None:
            self._niqe = NIQE(niqe_params=self.params)

    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        from ..inference import enhance_tensor

        current = adapter.model.with_weights(network)
        scores = [float(self._niqe(enhance_tensor(current, y, device=adapter.device, progress=False)))
                  for y in group.tensors]
        return sum(scores) / len(scores)

    def should_stop(self, scores: Sequence[float]) -> bool:
        return niqe_plateau(scores, self.min_delta, self.patience)


def holdout_mask(height: int, width: int, block: int, every: int) -> torch.Tensor:
    """``1x1xHxW`` mask, 0 on one ``block``-pixel square in ``every`` (a diagonal lattice that
    spreads the held-out squares evenly over the image), 1 elsewhere."""
    bi = torch.arange(height) // block
    bj = torch.arange(width) // block
    held = ((bi[:, None] + 3 * bj[None, :]) % every) == 0
    return (~held).float()[None, None]


def back_projection_error(adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float:
    """``mean_i ‖D(N(y_i)) − y_i‖₁``: how well the SR outputs of ``network``, degraded again by
    the method's own degradation model ``D`` (its kernel and downscaling), explain the real LR."""
    from ..inference import enhance_tensor

    current = adapter.model.with_weights(network)
    total = 0.0
    for i, y in enumerate(group.tensors):
        degrade = adapter.pair_degradation(group, i)
        if degrade is None:
            raise InputError(f"{type(adapter).__name__} has no degradation model: use another stopping rule")
        back = degrade(enhance_tensor(current, y, device=adapter.device, progress=False).to(y))
        total += float((back - y[..., : back.shape[-2], : back.shape[-1]]).abs().mean())
    return total / len(group.tensors)


class BackProjection(Stopping):
    """Back-projection consistency of the real LR (:func:`back_projection_error`) with the
    method's own degradation model (its estimated or given kernel). Lower is better; the
    start counts."""

    name = "consistency"
    scores_start = True

    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        return back_projection_error(adapter, network, group)


class HeldOutPairs(Stopping):
    """Held-out internal pairs: one ``block``×scale square of the LR images in ``every`` is
    never a training target; the score is the L1 error of ``N(y_d)`` on those pixels (``norm``
    ``"l2"``: the mean squared error).

    A new best must beat the best so far by ``min_gain`` (relative to the start's score), so
    noise-level changes do not move the selection off the unadapted weights; with
    ``patience`` the run stops after that many evaluations without a new best.

    With ``through_jpeg``, where JPEG shows in an image (:func:`~ttasr.pairs.detect_jpeg`), the
    prediction is compressed like the image was (the settings and grid read from its pixels)
    before it is compared: the target holds JPEG's blocks, and a prediction without them is not
    counted wrong for that. Not a default: on the proxy set it picked no better steps than the
    plain rule (benchmarks/RESULTS.md, 'The held-out error through JPEG').
    """

    name = "heldout"
    scores_start = True

    def __init__(self, block: int = 8, every: int = 8, min_gain: float = 0.0, patience: int | None = None,
                 norm: Literal["l1", "l2"] = "l1", through_jpeg: bool = False) -> None:
        self.block, self.every, self.min_gain, self.patience, self.norm = block, every, min_gain, patience, norm
        self.through_jpeg = through_jpeg
        self._best_at: list[int] = []
        self.jpeg_traces: list[JpegTrace | None] = []
        """What :meth:`prepare` read of each image's JPEG compression (``through_jpeg``)."""

    def prepare(self, adapter: Adapter[Any], group: ImageGroup) -> None:
        side = self.block * adapter.model.scale
        adapter.holdout_masks = [holdout_mask(y.shape[-2], y.shape[-1], side, self.every) for y in group.tensors]
        self._best_at = []
        from ..pairs.jpeg_trace import jpeg_trace_of

        self.jpeg_traces = [jpeg_trace_of(y, group.name(i)) if self.through_jpeg else None
                            for i, y in enumerate(group.tensors)]

    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        errors = self.image_errors(adapter, network, group)
        return sum(errors) / len(errors)

    def image_errors(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> list[float]:
        """The held-out error of each image of ``group`` (:meth:`score` is their mean)."""
        import torch

        from ..models.model import forward

        errors = []
        traces = self.jpeg_traces or [None] * len(group.tensors)
        with torch.no_grad():
            for (inp, target, weights), trace in zip(adapter.validation_pairs(group), traces):
                out = forward(network, inp.to(adapter.device)).float().cpu()
                if trace is not None:
                    out = trace.compress(out.clamp(0, 1))
                w = weights.expand_as(target)
                diff = (out - target).abs() if self.norm == "l1" else (out - target).square()
                errors.append(float((diff * w).sum() / w.sum().clamp_min(1)))
        return errors

    def improves(self, score: float, best: float, scores: Sequence[float]) -> bool:
        ok = score < best - self.min_gain * abs(scores[0])
        if ok:
            self._best_at.append(len(scores) - 1)
        return ok

    def should_stop(self, scores: Sequence[float]) -> bool:
        if self.patience is None:
            return False
        last = self._best_at[-1] if self._best_at else 0
        return len(scores) - 1 - last >= self.patience

    def describe(self) -> dict[str, str]:
        out = {"stopping": self.name, "holdout": f"1 in {self.every} squares of {self.block} LR px"}
        if any(self.jpeg_traces):
            out["holdout_through_jpeg"] = ", ".join(str(i) for i, t in enumerate(self.jpeg_traces) if t is not None)
        return out


class GuardedHeldOut(HeldOutPairs):
    """The held-out rule (:class:`HeldOutPairs`), vetoed by back-projection: weights can only
    become the best while their :func:`back_projection_error` is no larger than the starting
    weights'. The score is the held-out error.

    The veto is only as good as the degradation model: with a measured kernel (``kernel=``)
    it keeps the held-out rule off weights that no longer explain the real LR (on clean inputs
    and late in long runs); with the blind estimate it measures the model, not the camera
    (benchmarks/RESULTS.md, *The kernel decides*).
    """

    name = "heldout-guarded"

    def prepare(self, adapter: Adapter[Any], group: ImageGroup) -> None:
        super().prepare(adapter, group)
        self.limit: float | None = None
        self.last_error: float | None = None

    def begin(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> None:
        self.limit = back_projection_error(adapter, network, group)

    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        if self.limit is None:
            raise RuntimeError("GuardedHeldOut.score before begin(): the engine calls begin with the start")
        self.last_error = back_projection_error(adapter, network, group)
        return super().score(adapter, network, group)

    def eligible(self) -> bool:
        """Whether the last scored weights explain the real LR at least as well as the start."""
        return self.last_error is not None and self.limit is not None and self.last_error <= self.limit

    def improves(self, score: float, best: float, scores: Sequence[float]) -> bool:
        return self.eligible() and super().improves(score, best, scores)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "guard": "back-projection error no larger than the start's"}


class GuardedFallback(GuardedHeldOut):
    """The guarded rule (:class:`GuardedHeldOut`) with the held-out rule behind it: while the
    guard has accepted no weights, weights it rejects can still win on the held-out error
    alone; once it accepts some, only accepted weights can win.

    Whether the guard accepted weights is kept in the score itself, so that it survives a
    resumed run: the score of rejected weights is their held-out error plus
    :attr:`REJECTED` (:meth:`accepted` tells them apart). A method can then return less of a
    fallback pick than of accepted weights (AdaSSR's ``blend='auto'``).
    """

    name = "guarded-fallback"
    REJECTED = 1000.0
    """Added to the held-out error of weights the guard rejects (held-out errors are < 1)."""

    @classmethod
    def accepted(cls, score: float | None) -> bool:
        """Whether weights with this score passed the guard (the start always does)."""
        return score is None or score < cls.REJECTED

    def score(self, adapter: Adapter[Any], network: nn.Module, group: ImageGroup) -> float | None:
        held = super().score(adapter, network, group)
        return held if held is None or self.eligible() else held + self.REJECTED

    @classmethod
    def held_out_error(cls, score: float) -> float:
        """The held-out error in a score, accepted or not."""
        return score if cls.accepted(score) else score - cls.REJECTED

    def improves(self, score: float, best: float, scores: Sequence[float]) -> bool:
        if self.accepted(score):  # accepted weights compete with the best accepted ones (or the start)
            reference = best if self.accepted(best) else scores[0]
        elif self.accepted(best) and best != scores[0]:
            return False  # the guard has accepted weights: rejected ones can no longer win
        else:  # a fallback: the held-out rule among all weights so far
            reference = self.held_out_error(best)
        ok = self.held_out_error(score) < reference - self.min_gain * abs(scores[0])
        if ok:
            self._best_at.append(len(scores) - 1)
        return ok

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "fallback": "the held-out pick when the guard accepts no weights"}


STOPPING_RULES = ("auto", "fixed", "niqe-plateau", "consistency", "heldout", "heldout-guarded", "guarded-fallback")
"""Names accepted by ``AdapterConfig.stopping`` (``auto``: the method's own choice)."""


def stopping_from_config(config: Any, rule: str | None = None) -> Stopping:
    """The rule named ``rule`` (default: ``config.stopping``), with its parameters from ``config``."""
    rule = rule or config.stopping
    if rule == "auto":
        raise ValueError("stopping='auto' is resolved by the adapter (Adapter.stopping_rule)")
    if rule == "niqe-plateau":
        return NIQEPlateau(config.niqe_min_delta, config.niqe_patience, config.niqe_params)
    if rule == "consistency":
        return BackProjection()
    if rule == "heldout":
        return HeldOutPairs(min_gain=config.heldout_min_gain, patience=config.heldout_patience)
    if rule == "heldout-guarded":
        return GuardedHeldOut(min_gain=config.heldout_min_gain, patience=config.heldout_patience)
    if rule == "guarded-fallback":
        return GuardedFallback(min_gain=config.heldout_min_gain, patience=config.heldout_patience)
    return FixedBudget()
