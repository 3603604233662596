"""Loading super-resolution models and named checkpoints."""

from .._fs import cache_dir  # re-exported for compatibility: it lives in ttasr._fs now
from .blending import OutputBlend, blend_outputs
from .download import download
from .loader import from_spandrel, load_model
from .model import SizeRequirements, SRModel, forward
from .registry import (
    CHECKPOINTS,
    CheckpointSpec,
    checkpoint_status,
    list_checkpoints,
    resolve_checkpoint,
)

__all__ = [
    "CHECKPOINTS",
    "CheckpointSpec",
    "OutputBlend",
    "SRModel",
    "SizeRequirements",
    "blend_outputs",
    "cache_dir",
    "checkpoint_status",
    "download",
    "forward",
    "from_spandrel",
    "list_checkpoints",
    "load_model",
    "resolve_checkpoint",
]
