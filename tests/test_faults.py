"""Faults on a real `ttasr adapt` process: SIGKILL in the middle of a checkpoint write, then
--resume; SIGTERM mid-adaptation. The process is the installed CLI (`python -m ttasr.cli`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from ttasr.adapters.checkpointing import STATE_SUFFIX, load_state

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"), pytest.mark.slow]

_DELAY = "TTASR_TEST_STATE_WRITE_DELAY"
"""The test hook in ttasr.adapters.checkpointing.save_state: seconds to sleep mid-write."""


@pytest.fixture
def setup(tiny_compact, photo, tmp_path):
    from safetensors.torch import save_file

    model = tmp_path / "tiny.safetensors"
    save_file(tiny_compact.model.state_dict(), str(model))
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    Image.fromarray((photo[0, :, :48, :48].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(image)
    return model, image


def _command(model: Path, image: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ttasr.cli", "adapt", str(image), "-m", str(model), "--method", "internal",
            "-o", str(run / "out"), "--save-model", str(run / "adapted.safetensors"),
            "--checkpoint-dir", str(run / "states"), "--batch-size", "2", "--patch-size", "12",
            "--progress", "false", "--device", "cpu", "--set", "lr=0.001", *extra]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != _DELAY}
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **extra}


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done


def _states(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{STATE_SUFFIX}"))


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.part"))


def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_identical(setup, tmp_path):
    model, image = setup
    steps = ["--max-steps", "8", "--checkpoint-every", "2"]
    reference_run = subprocess.Popen(_command(model, image, tmp_path / "reference", *steps), env=_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    run = tmp_path / "killed"
    states = run / "states"
    proc = subprocess.Popen(_command(model, image, run, *steps), env=_env(**{_DELAY: "2"}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the step-2 state is complete and the step-4 write is under way (sleeping before its rename)
    _wait_for(lambda: bool(_states(states)) and bool(_parts(states)), proc, "the second checkpoint write")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # only complete states carry the state name; the unfinished write is a temporary .part file
    [state_file] = _states(states)
    assert load_state(state_file)["step"] == 2
    [stale] = _parts(states)
    stale.write_bytes(stale.read_bytes()[:1000])  # as if the kill had cut the write short
    assert not (run / "adapted.safetensors").exists() and not list((run / "out").glob("*"))

    _, err = reference_run.communicate(timeout=300)
    assert reference_run.returncode == 0, err
    resumed = _run(_command(model, image, run, *steps, "--resume"))
    assert "resumed from step 2" in resumed.stderr
    reference = load_file(str(tmp_path / "reference" / "adapted.safetensors"))
    adapted = load_file(str(run / "adapted.safetensors"))
    assert reference.keys() == adapted.keys()
    for name, tensor in reference.items():
        assert np.array_equal(tensor.numpy(), adapted[name].numpy()), name
    assert (run / "out" / "photo_internal.png").read_bytes() == (
        tmp_path / "reference" / "out" / "photo_internal.png").read_bytes()
    # the stale temporary file was never read as a state; the resumed run cleaned it up with its state
    assert _states(states) == [] and _parts(states) == []


def test_sigterm_mid_adaptation_exits_143_with_the_checkpoint_and_images(setup, tmp_path):
    model, image = setup
    run = tmp_path / "run"
    states = run / "states"
    proc = subprocess.Popen(_command(model, image, run, "--max-steps", "1000000", "--checkpoint-every", "5"),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: bool(_states(states)), proc, "the first checkpoint")  # training is under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err
    adapted = load_file(str(run / "adapted.safetensors"))
    base = load_file(str(model))
    assert adapted.keys() == base.keys()
    assert any(not np.array_equal(adapted[k].numpy(), base[k].numpy()) for k in base)
    assert Image.open(run / "out" / "photo_internal.png").size == (96, 96)
    # the state of the interrupted run stays, for --resume
    [state_file] = _states(states)
    assert load_state(state_file)["step"] >= 5
