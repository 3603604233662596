"""`SRModel`: one wrapper type for every super-resolution network ttasr works with.

spandrel traps handled here, each covered by a test:

* ``ImageModelDescriptor.__call__`` runs under ``torch.inference_mode``; tensors made there
  (SPAN rebuilds its fused ``eval_conv`` on each eval forward) cannot take part in autograd.
  We never call the descriptor: inference goes through ``torch.no_grad`` and adaptation
  works on :meth:`SRModel.trainable_copy`, rebuilt from cloned weights.
* ``train()`` switches on drop-path / dropout in SwinIR, HAT, Swin2SR, RGT, ...: adaptation
  keeps the network in eval mode with gradients enabled.
* SPAN's ``Conv3XC`` in eval mode copies its training branches into ``eval_conv`` through
  ``.data``, so no gradient reaches the real weights: those blocks alone train in train
  mode, which computes the same function through the branches.
* Some architectures return tuples: :func:`forward` keeps the first tensor.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

__all__ = ["SRModel", "SizeRequirements", "forward", "set_adaptation_mode", "state_hash"]


@dataclass(frozen=True)
class SizeRequirements:
    """Input size constraints of a model (mirrors spandrel's, without the dependency)."""

    minimum: int = 0
    multiple_of: int = 1
    square: bool = False

    def padding(self, height: int, width: int) -> tuple[int, int]:
        """Padding (bottom, right) that makes an ``height x width`` input acceptable."""
        h, w = max(self.minimum, height), max(self.minimum, width)
        m = self.multiple_of
        h, w = -(-h // m) * m, -(-w // m) * m
        if self.square:
            h = w = max(h, w)
        return h - height, w - width


def state_hash(module: nn.Module, *, skip_derived: bool = False) -> str:
    """sha256 of a module's state dict (names, shapes, float32 bytes), stable across devices.

    ``skip_derived`` leaves out tensors a network rebuilds from its other weights at run time
    (SPAN's fused ``eval_conv``)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if skip_derived and name.rsplit(".", 2)[-2:-1] == ["eval_conv"]:
            continue  # SPAN rebuilds these from its branches on every eval forward
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on a BCHW batch and return one tensor, unwrapping tuple outputs."""
    out = module(x)
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, torch.Tensor)), None)
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{type(module).__name__} returned {type(out).__name__}, not an image tensor")
    return out


@dataclass
class SRModel:
    """A super-resolution network plus what ttasr needs to know about it.

    Build one with :func:`ttasr.load_model`. ``module`` is the network; inference never
    modifies it. Use :meth:`trainable_copy` for adaptation and :meth:`with_weights` to
    wrap adapted weights in a new ``SRModel`` with the same metadata.
    """

    module: nn.Module
    scale: int
    architecture: str = "custom"
    in_channels: int = 3
    out_channels: int = 3
    size_requirements: SizeRequirements = field(default_factory=SizeRequirements)
    tiling: str = "supported"
    """``"supported"``, ``"discouraged"`` or ``"internal"`` (spandrel's ``ModelTiling``)."""
    supports_half: bool = False
    supports_bfloat16: bool = False
    spandrel_compatible: bool = False
    """True when the state dict loads back with ``spandrel.ModelLoader``."""
    source: str = ""
    """Where the weights came from (path, name or ``"module"``), for metadata."""
    metadata: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.module.parameters(), None)
        return p.dtype if p is not None else torch.float32

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def supports(self, dtype: torch.dtype) -> bool:
        """Whether the network may run in ``dtype``."""
        if dtype == torch.float32:
            return True
        if dtype == torch.float16:
            return self.supports_half
        if dtype == torch.bfloat16:
            return self.supports_bfloat16
        return False

    def weights_hash(self) -> str:
        """sha256 of the weights (names, shapes, float32 bytes), stable across devices.

        Tensors a network derives from its other weights at run time (SPAN's fused
        ``eval_conv``) are left out, so running the model does not change its hash.
        """
        return state_hash(self.module, skip_derived=True)

    # ------------------------------------------------------------------ inference
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve a BCHW batch in [0, 1] on the model's device; no padding, no clamp."""
        modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        try:
            with torch.no_grad():
                return forward(self.module, x.to(self.device, self.dtype))
        finally:
            for m, training in modes:  # per module: adaptation mode mixes train and eval
                m.training = training

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SRModel:
        """Move the network in place; refuses dtypes the architecture does not support."""
        if dtype is not None and not self.supports(dtype):
            raise ModelError(f"{self.architecture} does not support {dtype}; use torch.float32")
        self.module.to(device=device, dtype=dtype)
        return self

    # ------------------------------------------------------------------ adaptation
    def trainable_copy(self) -> nn.Module:
        """A fresh copy of the network for adaptation: eval mode, gradients on, float32.

        Weights are cloned outside inference mode, so the copy can be trained even if the
        original went through spandrel's inference-mode call path.
        """
        with torch.inference_mode(False):
            clone = copy.deepcopy(_strip_inference_tensors(self.module))
        set_adaptation_mode(clone)
        for p in clone.parameters():
            p.requires_grad_(True)
        return clone

    def with_weights(self, module_or_state: nn.Module | dict[str, torch.Tensor], **metadata: str) -> SRModel:
        """A new ``SRModel`` sharing this one's metadata, with other weights.

        A module is wrapped as is (e.g. to evaluate a network while it trains); a state
        dict is loaded into a fresh frozen copy.
        """
        if isinstance(module_or_state, nn.Module):
            module = module_or_state  # a view: gradient flags and modes are left as they are
        else:
            module = self.trainable_copy()
            module.load_state_dict(module_or_state)
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()
        new = copy.copy(self)
        new.module = module
        new.metadata = {**self.metadata, **metadata}
        return new

    def describe(self) -> dict[str, Any]:
        """A short summary for logs and the CLI."""
        return {
            "architecture": self.architecture,
            "scale": self.scale,
            "channels": f"{self.in_channels}->{self.out_channels}",
            "parameters": self.num_parameters,
            "size_requirements": self.size_requirements,
            "tiling": self.tiling,
            "fp16": self.supports_half,
            "bf16": self.supports_bfloat16,
            "source": self.source,
        }


# Blocks whose eval-mode forward detaches their trainable weights (see module docstring).
_TRAIN_MODE_BLOCKS = frozenset({"Conv3XC"})


def set_adaptation_mode(module: nn.Module) -> nn.Module:
    """Eval mode (no dropout or drop-path) except blocks that only train in train mode."""
    module.eval()
    for m in module.modules():
        if type(m).__name__ in _TRAIN_MODE_BLOCKS:
            m.train()
    return module


def _strip_inference_tensors(module: nn.Module) -> nn.Module:
    """Replace inference-mode tensors (params, buffers, plain tensor attributes) by clones.

    ``copy.deepcopy`` refuses inference tensors and autograd rejects them, so a model that
    went through spandrel's call path must have them replaced before training.
    """
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None and p.is_inference():
                sub._parameters[name] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
        for name, b in list(sub._buffers.items()):
            if b is not None and b.is_inference():
                sub._buffers[name] = b.clone()
        for name, v in list(vars(sub).items()):
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) and v.is_inference():
                setattr(sub, name, v.clone())
    return module
