"""ttasr: test-time adaptation of super-resolution models.

>>> import ttasr
>>> model = ttasr.load_model("span-x4")
>>> adapter = ttasr.AdaSSR(model)
>>> sr = adapter.fit(lr_images).enhance()
>>> adapter.save("adapted.safetensors")
>>> sr = ttasr.HRAware(model).fit(lr_images).enhance()   # HR-aware LR reconstruction
"""

from __future__ import annotations

import logging

from ._version import __version__
from .errors import CheckpointError, InputError, MissingDependencyError, ModelError, TTASRError
from .adapters import Adapter, AdapterConfig, Callback
from .methods.adassr import AdaSSR, AdaSSRConfig
from .methods.hraware import HRAware, HRAwareConfig
from .methods.internal import InternalLearning, InternalLearningConfig
from .methods.lway import LWay, LWayConfig
from .methods.registry import create_adapter, list_adapters
from .inference import enhance
from .io import load_images, save_image
from .models import SRModel, list_checkpoints, load_model

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "load_model",
    "enhance",
    "load_images",
    "save_image",
    "Adapter",
    "AdapterConfig",
    "Callback",
    "InternalLearning",
    "InternalLearningConfig",
    "AdaSSR",
    "AdaSSRConfig",
    "HRAware",
    "HRAwareConfig",
    "LWay",
    "LWayConfig",
    "create_adapter",
    "list_adapters",
    "SRModel",
    "list_checkpoints",
    "TTASRError",
    "InputError",
    "ModelError",
    "CheckpointError",
    "MissingDependencyError",
]
