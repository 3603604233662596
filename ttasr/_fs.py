"""Files: the cache folder, atomic writes that keep the umask's permissions, hashes.

Every file ttasr writes (checkpoints, training states, images, metric parameters, caches)
goes through :func:`atomic_write`: the data lands in a temporary file beside the target
and is renamed over it only when complete, so a crash or Ctrl-C never leaves a partial
file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "cache_dir", "sha256_of"]


def cache_dir(sub: str = "") -> Path:
    """``$TTASR_HOME`` (default ``~/.cache/ttasr``), or a folder inside it, created."""
    root = Path(os.environ.get("TTASR_HOME", Path.home() / ".cache" / "ttasr")).expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _target_mode(dest: Path) -> int:
    """An overwrite keeps the existing file's mode; a new file gets 0666 less the umask."""
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically.

    >>> with atomic_write("out.safetensors") as tmp:
    ...     save_file(tensors, tmp)

    If the block raises (or is interrupted), ``dest`` is untouched and the temporary file
    is removed. Permissions follow the umask for a new file and are kept on overwrite
    (``mkstemp`` alone would make every file 0600).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _target_mode(dest))
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(dest: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``dest`` through :func:`atomic_write`."""
    dest = Path(dest)
    with atomic_write(dest) as tmp:
        tmp.write_bytes(data)
    return dest
