"""The cache directory and verified downloads of checkpoint files."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import CheckpointError

__all__ = ["cache_dir", "download", "sha256_of", "atomic_write_path"]

log = logging.getLogger(__name__)


def cache_dir(sub: str = "") -> Path:
    """``$TTASR_HOME`` (default ``~/.cache/ttasr``), or a folder inside it, created."""
    root = Path(os.environ.get("TTASR_HOME", Path.home() / ".cache" / "ttasr")).expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_path(dest: Path) -> Path:
    """A temporary path beside ``dest``; ``os.replace`` it onto ``dest`` when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


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
    beside it, is hashed, and is renamed into place only when the hash matches.
    """
    dest = Path(dest)
    tmp = atomic_write_path(dest)
    h = hashlib.sha256()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "ttasr"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise CheckpointError(
                f"downloaded {url} but its sha256 is {digest}, expected {sha256}: the file is "
                "corrupt or not the published checkpoint. Nothing was saved; try again or "
                "download it by hand and pass its path."
            )
        os.replace(tmp, dest)
        log.info("downloaded %s -> %s", url, dest)
        return dest
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CheckpointError(f"could not download {url}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
