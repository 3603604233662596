"""Verified downloads of checkpoint files."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .._fs import atomic_write
from ..errors import CheckpointError

__all__ = ["download"]

log = logging.getLogger(__name__)


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``sha256`` when given.

    A partial or corrupt file never lands at ``dest``: the data goes to a temporary file
    beside it (:func:`ttasr._fs.atomic_write`), and is renamed into place only when its
    size matches the server's ``Content-Length`` (when sent) and its hash matches
    ``sha256`` (when given; compared case-insensitively).
    """
    dest = Path(dest)
    try:
        with atomic_write(dest) as tmp:
            req = urllib.request.Request(url, headers={"User-Agent": "ttasr"})
            h = hashlib.sha256()
            size = 0
            with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
                announced = (resp.headers.get("Content-Length") or "").strip()
                expected = int(announced) if announced.isdigit() else None
                with tqdm(total=expected or None, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                          leave=False) as bar:
                    while block := resp.read(1 << 20):
                        out.write(block)
                        h.update(block)
                        size += len(block)
                        bar.update(len(block))
            # http.client returns a short body without complaint when the connection drops,
            # so without a pinned hash the length is the only sign of a truncated file.
            if expected is not None and size != expected:
                raise CheckpointError(
                    f"downloaded {url} but got {size} bytes, while the server announced "
                    f"{expected} (Content-Length): the transfer was cut off. Nothing was saved; try again "
                    "or download it by hand and pass its path."
                )
            digest = h.hexdigest()
            if sha256 is not None and digest != sha256.lower():
                raise CheckpointError(
                    f"downloaded {url} but its sha256 is {digest}, expected {sha256}: the file is "
                    "corrupt or not the published checkpoint. Nothing was saved; try again or "
                    "download it by hand and pass its path."
                )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CheckpointError(f"could not download {url}: {exc}") from exc
    log.info("downloaded %s -> %s", url, dest)
    return dest
