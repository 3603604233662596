"""A cache of AdaSSR's attention maps: computed once per image, model and method.

Maps are keyed by a digest of the image data, the model's weights, the method and its
parameters. :class:`AttentionCache` keeps the latest ones in memory and, optionally, as
``.pt`` files in a folder (written through :func:`ttasr._fs.atomic_write`, read back with
``torch.load(weights_only=True)``: plain tensors, nothing is unpickled).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..._fs import atomic_write, cache_dir
from ...models.features import unwrap_module
from ...models.model import state_hash

__all__ = ["AttentionCache"]

log = logging.getLogger(__name__)


def _tensor_digest(t: torch.Tensor) -> str:
    a = t.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(a.shape)).encode())
    h.update(a.numpy().tobytes())
    return h.hexdigest()


def _weights_digest(model: Any) -> str:
    """``model.weights_hash()`` where there is one, else a hash of the whole state dict."""
    fn = getattr(model, "weights_hash", None)
    if callable(fn):
        return str(fn())
    return state_hash(unwrap_module(model))


class AttentionCache:
    """Attention maps keyed by (image data, model weights, method and its parameters).

    An LRU of ``max_items`` maps in memory; with ``directory`` (a path, or ``True`` for
    ``cache_dir("attention")``) maps are also stored there as ``.pt`` files, written
    atomically, so a second run on the same image and model skips the computation.
    """

    def __init__(self, max_items: int = 32, directory: str | Path | bool | None = None) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        if directory is True:
            self.directory: Path | None = cache_dir("attention")
        elif directory:
            self.directory = Path(directory)
            self.directory.mkdir(parents=True, exist_ok=True)
        else:
            self.directory = None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image: torch.Tensor, model: Any, method: str, **params: Any) -> str:
        h = hashlib.sha256()
        h.update(_tensor_digest(image).encode())
        h.update(_weights_digest(model).encode())
        h.update(method.encode())
        h.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
        return h.hexdigest()[:32]

    def get_or_compute(
        self,
        image: torch.Tensor,
        model: Any,
        compute: Callable[[], torch.Tensor],
        *,
        method: str,
        **params: Any,
    ) -> torch.Tensor:
        """The cached map for this key, or ``compute()`` stored under it."""
        key = self.key(image, model, method, **params)
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key].clone()
        loaded = self._load(key)
        if loaded is not None:
            self.hits += 1
            self._store(key, loaded)
            return loaded.clone().to(image.device)
        self.misses += 1
        value = compute().detach()
        # Some networks rewrite weights on their first forward (spandrel's SPAN rebuilds its
        # fused eval_conv), so the key after computing may differ: store under both.
        keys = {key, self.key(image, model, method, **params)}
        for k in keys:
            self._store(k, value.cpu())
            if self.directory is not None:
                with atomic_write(self.directory / f"{k}.pt") as tmp:
                    torch.save(value.cpu(), tmp)
        return value.clone()

    def _load(self, key: str) -> torch.Tensor | None:
        """The map stored on disk under ``key``; None if absent or unreadable."""
        if self.directory is None:
            return None
        file = self.directory / f"{key}.pt"
        if not file.is_file():
            return None
        try:
            value = torch.load(file, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError) as exc:  # corrupt: recompute
            log.warning("ignoring unreadable attention cache file %s: %s", file, exc)
            return None
        if not isinstance(value, torch.Tensor):
            log.warning("ignoring attention cache file %s: it holds %s, not a tensor", file, type(value).__name__)
            return None
        return value

    def _store(self, key: str, value: torch.Tensor) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
