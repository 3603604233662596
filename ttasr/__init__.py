"""ttasr: test-time adaptation of super-resolution models.

>>> import ttasr
>>> model = ttasr.load_model("span-x4")
>>> adapter = ttasr.AdaSSR(model)
>>> sr = adapter.fit(lr_images).enhance()
>>> adapter.save("adapted.safetensors")
"""

from __future__ import annotations

import logging

from ._version import __version__
from .errors import CheckpointError, InputError, MissingDependencyError, ModelError, TTASRError
from .models import SRModel, list_checkpoints, load_model

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "load_model",
    "SRModel",
    "list_checkpoints",
    "TTASRError",
    "InputError",
    "ModelError",
    "CheckpointError",
    "MissingDependencyError",
]
