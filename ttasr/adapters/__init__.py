"""Test-time adaptation methods and their shared machinery."""

from .base import Adapter, Batch, Callback, FitResult
from .config import AdapterConfig
from .internal import InternalLearning, InternalLearningConfig
from .registry import ADAPTERS, create_adapter, list_adapters, register_adapter

__all__ = [
    "Adapter", "AdapterConfig", "Batch", "Callback", "FitResult",
    "InternalLearning", "InternalLearningConfig",
    "ADAPTERS", "create_adapter", "list_adapters", "register_adapter",
]
