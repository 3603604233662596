"""Writing adapted weights as spandrel-loadable safetensors."""

from __future__ import annotations

from pathlib import Path

import torch

from .._fs import atomic_write
from ..errors import ModelError
from .model import SRModel

__all__ = ["save_model"]


def save_model(model: SRModel, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save ``model``'s weights to ``path`` (.safetensors or .pth), atomically.

    The state dict keeps the architecture's own key names, so ``spandrel.ModelLoader``
    loads the file back as the same architecture: a drop-in replacement for the original
    checkpoint. ``metadata`` (strings) is stored in the safetensors header.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt"):
        raise ModelError(f"cannot save to '{path}': use a .safetensors (recommended) or .pth suffix")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.module.state_dict().items()}
    # tensors that share storage (tied weights) must be distinct for safetensors
    seen: set[int] = set()
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            state[k] = v.clone()
        seen.add(ptr)
    meta = {"architecture": model.architecture, "scale": str(model.scale), **(metadata or {})}
    if not model.spandrel_compatible:
        meta["note"] = "custom module: load with load_state_dict, spandrel does not know this architecture"
    with atomic_write(path) as tmp:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={k: str(v) for k, v in meta.items()})
        else:
            torch.save(state, tmp)
    return path
