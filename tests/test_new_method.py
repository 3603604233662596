"""A new method written against the public hooks only: the test of the engine's design.

``IdentityConsistency`` below is the whole method (about 40 lines). It needs no edit
outside this file and one registry line (``METHODS.add``, done by the fixture).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import spandrel
import torch
from torch import nn

import ttasr
from ttasr._config import option
from ttasr.adapters import Adapter, AdapterConfig, Batch, Callback, ImageGroup
from ttasr.adapters.stopping import FixedBudget, NIQEPlateau
from ttasr.degradations.kernels import imresize
from ttasr.methods.registry import METHODS


# ------------------------------------------------------------------ the method
@dataclass(frozen=True)
class IdentityConsistencyConfig(AdapterConfig):
    """Back-projection: downscaling the SR output must give the LR input back."""

    max_steps: int = option(20, "Steps.", low=0, affects_result=False)
    smooth: float = option(0.5, "Blur of the frozen reference network's target mix.", low=0, high=1)


class IdentityConsistency(Adapter[IdentityConsistencyConfig]):
    name = "identity-consistency"
    config_class = IdentityConsistencyConfig

    def __init__(self, model, config=None, **overrides):
        super().__init__(model, config, **overrides)
        self.reference = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)  # a frozen helper

    def frozen_networks(self):
        return {"reference": self.reference}

    def prepare(self, group: ImageGroup, student: nn.Module) -> None:
        self.crops = [y for y in group.tensors]

    def sample_batch(self, generator: torch.Generator) -> Batch:
        p = self.config.patch_size
        out = []
        for _ in range(self.config.batch_size):
            y = self.crops[int(torch.randint(len(self.crops), (), generator=generator))]
            t = int(torch.randint(y.shape[-2] - p + 1, (), generator=generator))
            left = int(torch.randint(y.shape[-1] - p + 1, (), generator=generator))
            out.append(y[..., t:t + p, left:left + p])
        x = torch.cat(out)
        return Batch(x, x)  # targets the size of the inputs: LR reconstruction

    def compute_loss(self, student: nn.Module, batch: Batch) -> torch.Tensor:
        sr = student(batch.inputs)
        back = imresize(sr, size=tuple(batch.targets.shape[-2:]))
        a = self.config.smooth
        target = (1 - a) * batch.targets + a * self.reference(batch.targets)
        return (back - target).abs().mean()


# ------------------------------------------------------------------ tests
FAST = dict(batch_size=2, patch_size=16, lr=1e-3, progress=False)


@pytest.fixture(autouse=True)
def registered():
    METHODS.add(IdentityConsistency)  # the one registry line
    yield
    METHODS.remove(IdentityConsistency)


def _weights(adapter, final=False):
    return adapter.adapted_model(final=final).module.state_dict()


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_fits_by_name_and_lowers_its_loss(tiny_compact, photo):
    adapter = ttasr.create_adapter("identity-consistency", tiny_compact, **FAST, max_steps=30)
    assert isinstance(adapter, IdentityConsistency) and "identity-consistency" in ttasr.list_adapters()
    adapter.fit(photo)
    losses = [h["loss"] for h in adapter.results[0].history]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert not _equal(_weights(adapter), tiny_compact.model.state_dict())


def test_frozen_helper_is_kept_out_of_training(tiny_compact, photo):
    adapter = IdentityConsistency(tiny_compact, **FAST, max_steps=3)
    adapter.reference = nn.Conv2d(3, 3, 3, padding=1)  # with parameters, to check they stay put
    before = {k: v.clone() for k, v in adapter.reference.state_dict().items()}
    adapter.compute_loss = lambda s, b: (s(b.inputs).mean() - adapter.reference(b.targets).mean()).abs()
    adapter.fit(photo)
    assert not adapter.reference.training
    assert all(not p.requires_grad for p in adapter.reference.parameters())
    assert _equal(adapter.reference.state_dict(), before)


def test_resumes_bit_exactly(tiny_compact, photo, tmp_path):
    cfg = dict(FAST, max_steps=10, ema_decay=0.9, checkpoint_every=4, checkpoint_dir=str(tmp_path))
    full = IdentityConsistency(tiny_compact, **cfg).fit(photo)

    class Stop(Callback):
        def on_step(self, adapter, step, loss):
            if step == 6:
                raise KeyboardInterrupt

    IdentityConsistency(tiny_compact, **cfg).fit(photo, callbacks=[Stop()])
    ran: list[int] = []
    steps = type("Steps", (Callback,), {"on_step": lambda self, a, s, l: ran.append(s)})()
    resumed = IdentityConsistency(tiny_compact, **cfg).fit(photo, resume=True, callbacks=[steps])
    assert ran == [5, 6, 7, 8, 9, 10]  # from the step-4 checkpoint
    assert _equal(_weights(resumed), _weights(full))


def test_stops_with_niqe_plateau_and_fixed_budget(tiny_compact, photo, niqe_params_file):
    big = torch.nn.functional.interpolate(photo, size=(192, 192), mode="bicubic").clamp(0, 1)
    rule = NIQEPlateau(min_delta=10.0, patience=2, params=str(niqe_params_file))  # any change is a plateau
    a = IdentityConsistency(tiny_compact, stopping=rule, **FAST, max_steps=50, eval_every=2).fit(big)
    r = a.results[0]
    assert r.stopped_early and r.steps == 4 and r.best_score == min(h["score"] for h in r.history if "score" in h)
    b = IdentityConsistency(tiny_compact, stopping=FixedBudget(), **FAST, max_steps=5).fit(big)
    assert not b.results[0].stopped_early and b.results[0].steps == 5 and b.results[0].best_step == 5


def test_saves_a_spandrel_checkpoint(tiny_compact, photo, tmp_path):
    a = IdentityConsistency(tiny_compact, **FAST, max_steps=3).fit(photo)
    [path] = a.save(tmp_path / "ic.safetensors")
    loaded = spandrel.ModelLoader().load_from_file(path)
    assert _equal(loaded.model.state_dict(), _weights(a))
    meta = ttasr.load_model(path).metadata
    assert meta["ttasr_method"] == "identity-consistency" and meta["stopping"] == "fixed"
