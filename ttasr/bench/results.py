"""Result files: one append-only JSON-lines file per rank, read back (torn lines tolerated),
and merged into one file, one record per job."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "MERGED", "RESULTS_GLOB", "finished_keys", "merge_results", "read_results"]

log = logging.getLogger(__name__)

RESULTS_GLOB = "results-rank*.jsonl"
MERGED = "results.jsonl"
MANIFEST = "manifest.json"


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of one JSON-lines file; a torn (unparseable) last line is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                log.warning("%s: ignored a torn last line (a job killed while writing)", path)
            else:
                log.warning("%s: line %d is not JSON; ignored", path, n + 1)
    return records


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline, so that the next record starts a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(keep)
        log.warning("%s: cut a torn last line of %d bytes", path, len(data) - keep)


def _all_records(out_dir: Path) -> list[dict[str, Any]]:
    return [r for path in sorted(out_dir.glob(RESULTS_GLOB)) for r in read_results(path)]


def finished_keys(out_dir: str | os.PathLike[str]) -> set[str]:
    """Keys of the jobs with a successful record in any rank's file of ``out_dir``."""
    return {r["key"] for r in _all_records(Path(out_dir)) if r.get("status") == "ok" and "key" in r}


def merge_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every rank's records, one per job key, written to ``out_dir/results.jsonl``.

    A successful record wins over an error for the same key; among equals the later one
    (file order, then rank order) wins. Records are sorted by key.
    """
    out_dir = Path(out_dir)
    best: dict[str, dict[str, Any]] = {}
    for record in _all_records(out_dir):
        key = record.get("key")
        if key is None:
            continue
        old = best.get(key)
        if old is None or record.get("status") == "ok" or old.get("status") != "ok":
            best[key] = record
    merged = [best[k] for k in sorted(best)]
    tmp = out_dir / (MERGED + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in merged:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    tmp.replace(out_dir / MERGED)
    return merged


class Appender:
    """Appends one JSON line per record, each flushed and fsynced before returning."""

    def __init__(self, path: Path) -> None:
        _cut_torn_tail(path)
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True, allow_nan=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
