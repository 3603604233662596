"""Building pyiqa metric objects quietly (pyiqa logs at INFO to its own stream handler)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import require

__all__ = ["create_pyiqa_metric"]

_quietened = False


def create_pyiqa_metric(name: str, device: torch.device | str, feature: str, **opts: Any) -> torch.nn.Module:
    """``pyiqa.create_metric(name, device=device, **opts)``, with pyiqa's INFO chatter off.

    ``feature`` names the ttasr metric in the install hint when pyiqa is missing.
    """
    global _quietened
    pyiqa = require("pyiqa", "metrics", feature)
    if not _quietened:
        from pyiqa.utils import get_root_logger

        logger = get_root_logger()  # creates pyiqa's handler once; then we raise its level
        if logger.level <= logging.INFO:
            logger.setLevel(logging.WARNING)
        _quietened = True
    return pyiqa.create_metric(name, device=torch.device(device), **opts)
