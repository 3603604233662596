"""ZSSR-style internal learning: the plain baseline of the self-similarity methods."""

from __future__ import annotations

from .adapter import InternalLearning, InternalLearningConfig

__all__ = ["InternalLearning", "InternalLearningConfig"]
