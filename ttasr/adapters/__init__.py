"""The adaptation engine every method shares: base class, loop, stopping, config, registry."""

from .base import Adapter, Batch, Callback, FitResult, ImageGroup
from .config import AdapterConfig
from .registry import AdapterRegistry

__all__ = ["Adapter", "AdapterConfig", "AdapterRegistry", "Batch", "Callback", "FitResult", "ImageGroup"]
