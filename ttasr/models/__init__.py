"""Loading super-resolution models and named checkpoints."""

from .download import cache_dir, download
from .loader import from_spandrel, load_model
from .model import SizeRequirements, SRModel, forward
from .registry import CHECKPOINTS, CheckpointSpec, checkpoint_status, list_checkpoints, resolve_checkpoint

__all__ = [
    "SRModel", "SizeRequirements", "forward", "load_model", "from_spandrel", "cache_dir", "download",
    "CHECKPOINTS", "CheckpointSpec", "checkpoint_status", "list_checkpoints", "resolve_checkpoint",
]
