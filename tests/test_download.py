"""Named-checkpoint resolution and verified downloads, against a loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import stat
import threading
from functools import partial

import pytest

from ttasr._fs import cache_dir
from ttasr.errors import CheckpointError
from ttasr.models import registry
from ttasr.models.download import download


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path on 127.0.0.1 (never the internet)."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path
    httpd.shutdown()


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 4000 bytes, sends 1000, then closes: a connection dropped mid-transfer."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "4000")
        self.end_headers()
        self.wfile.write(b"w" * 1000)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args, **kwargs) -> None:
        pass


@pytest.fixture
def truncating_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_download_with_good_hash(server, tmp_path_factory):
    url, root = server
    payload = b"weights" * 1000
    (root / "w.pth").write_bytes(payload)
    dest = tmp_path_factory.mktemp("dl") / "w.pth"
    out = download(f"{url}/w.pth", dest, hashlib.sha256(payload).hexdigest(), progress=False)
    assert out == dest and dest.read_bytes() == payload
    assert not list(dest.parent.glob("*.part"))


def test_download_with_bad_hash_saves_nothing(server, tmp_path_factory):
    url, root = server
    (root / "w.pth").write_bytes(b"tampered")
    dest = tmp_path_factory.mktemp("dl") / "w.pth"
    with pytest.raises(CheckpointError, match="sha256"):
        download(f"{url}/w.pth", dest, "0" * 64, progress=False)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_download_unreachable_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="could not download"):
        download("http://127.0.0.1:9/none.pth", tmp_path / "x.pth", progress=False, timeout=2)


def test_resolve_order_cache_then_url_then_clear_failure(server, monkeypatch):
    url, root = server
    payload = b"abc" * 10
    (root / "m.pth").write_bytes(payload)
    spec = registry.CheckpointSpec("test-model", "ESRGAN", 4, "test", "MIT", f"{url}/m.pth",
                                   hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(registry.CHECKPOINTS, "test-model", spec)
    assert registry.checkpoint_status("test-model") == "url"
    path = registry.resolve_checkpoint("test-model", progress=False)
    assert path.parent == cache_dir("checkpoints") and path.read_bytes() == payload
    (root / "m.pth").unlink()  # now only the cache has it
    assert registry.checkpoint_status("test-model") == "cache"
    assert registry.resolve_checkpoint("test-model") == path
    path.unlink()
    with pytest.raises(CheckpointError) as info:
        registry.resolve_checkpoint("test-model", progress=False)
    msg = str(info.value)
    assert "Ways to supply it" in msg and "pass the path" in msg and str(cache_dir("checkpoints")) in msg


def test_offline_env_skips_the_url(server, monkeypatch):
    url, root = server
    (root / "m.pth").write_bytes(b"x")
    spec = registry.CheckpointSpec("test-model", "ESRGAN", 4, "test", "MIT", f"{url}/m.pth", None)
    monkeypatch.setitem(registry.CHECKPOINTS, "test-model", spec)
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="not available"):
        registry.resolve_checkpoint("test-model", progress=False)


def test_a_file_placed_in_the_cache_resolves_a_name_without_url(monkeypatch):
    spec = registry.CheckpointSpec("local-only", "HAT", 4, "test", "Apache-2.0")
    monkeypatch.setitem(registry.CHECKPOINTS, "local-only", spec)
    with pytest.raises(CheckpointError, match="local-only.safetensors"):
        registry.resolve_checkpoint("local-only")
    placed = cache_dir("checkpoints") / "local-only.safetensors"
    placed.write_bytes(b"x")
    assert registry.checkpoint_status("local-only") == "cache"
    assert registry.resolve_checkpoint("local-only") == placed


def test_truncated_download_without_hash_is_refused(truncating_server, tmp_path):
    """Defect 14: with no pinned sha256, only Content-Length can reveal a cut-off transfer."""
    dest = tmp_path / "dl" / "w.pth"
    with pytest.raises(CheckpointError, match=r"1000 bytes.*4000 \(Content-Length\)"):
        download(f"{truncating_server}/w.pth", dest, None, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_truncated_download_leaves_nothing_in_the_cache(truncating_server, monkeypatch):
    spec = registry.CheckpointSpec("cut-model", "ESRGAN", 4, "test", "MIT", f"{truncating_server}/m.pth", None)
    monkeypatch.setitem(registry.CHECKPOINTS, "cut-model", spec)
    with pytest.raises(CheckpointError, match="Content-Length"):
        registry.resolve_checkpoint("cut-model", progress=False)
    assert list(cache_dir("checkpoints").iterdir()) == []
    assert registry.checkpoint_status("cut-model") == "url"


def test_upper_case_registry_hash_is_served_from_the_cache(server, monkeypatch):
    """Defect 14: an upper-case pinned sha256 must not force a download on every resolve."""
    url, root = server
    payload = b"upper" * 100
    (root / "u.pth").write_bytes(payload)
    spec = registry.CheckpointSpec("upper-model", "ESRGAN", 4, "test", "MIT", f"{url}/u.pth",
                                   hashlib.sha256(payload).hexdigest().upper())
    monkeypatch.setitem(registry.CHECKPOINTS, "upper-model", spec)
    path = registry.resolve_checkpoint("upper-model", progress=False)
    assert path.read_bytes() == payload
    (root / "u.pth").unlink()  # a second download would now fail
    assert registry.checkpoint_status("upper-model") == "cache"
    assert registry.resolve_checkpoint("upper-model", progress=False) == path


def test_download_permissions_follow_the_umask_and_overwrite_keeps_the_mode(server, tmp_path_factory, umask_022):
    """Defect 12: mkstemp made every downloaded file 0600."""
    url, root = server
    (root / "w.pth").write_bytes(b"new weights")
    folder = tmp_path_factory.mktemp("dl")
    fresh = download(f"{url}/w.pth", folder / "fresh.pth", progress=False)
    assert _mode(fresh) == 0o644
    existing = folder / "existing.pth"
    existing.write_bytes(b"old")
    os.chmod(existing, 0o640)
    download(f"{url}/w.pth", existing, progress=False)
    assert existing.read_bytes() == b"new weights" and _mode(existing) == 0o640
