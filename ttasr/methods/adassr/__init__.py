"""AdaSSR (Fan et al., IEEE TIP 2024): adaptive self-similarity mining, METHODS §1.

:class:`AdaSSR` is the adapter. Its building blocks: attention maps and loss weights
(:mod:`.attention`, eqs. 12-14; cached by :mod:`.attention_cache`, drawn by :mod:`.heatmap`),
the NIQE stopping rule (:class:`ttasr.adapters.stopping.NIQEPlateau`); pairs,
kernel estimation and augmentations live in :mod:`ttasr.pairs`.
"""

from __future__ import annotations

from ...adapters.stopping import niqe_plateau
from .adapter import AdaSSR, AdaSSRConfig
from .attention import (
    attention_weights,
    feature_attention_map,
    find_attention_block,
    transformer_attention_map,
)
from .attention_cache import AttentionCache
from .heatmap import save_heatmap

__all__ = [
    "AdaSSR",
    "AdaSSRConfig",
    "AttentionCache",
    "attention_weights",
    "feature_attention_map",
    "find_attention_block",
    "niqe_plateau",
    "save_heatmap",
    "transformer_attention_map",
]
