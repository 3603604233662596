"""LWay (Chen et al., CVPR 2024, "Low-Res Leads the Way"): LR-reconstruction finetuning with
a high-frequency weighted loss, a baseline for HR-aware adaptation (METHODS §3)."""

from __future__ import annotations

from .adapter import LWAY_LR, LWay, LWayConfig
from .weight_map import haar_detail_magnitude, haar_dwt, high_frequency_weight_map

__all__ = ["LWAY_LR", "LWay", "LWayConfig", "haar_detail_magnitude", "haar_dwt", "high_frequency_weight_map"]
