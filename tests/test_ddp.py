"""Multi-image adaptation in DistributedDataParallel: two CPU processes with gloo.

Each rank draws its own batches and DDP averages the gradients, so the ranks end with the
same weights, which differ from a one-process run (twice the pairs per step)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _tiny_model():
    from spandrel.architectures.Compact import Compact

    import ttasr

    torch.manual_seed(1)
    return ttasr.load_model(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2))


def _photos():
    import numpy as np
    from skimage import data

    img = data.astronaut()[100:196, 180:276]
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
    return [t, t.flip(-1)]


def _adapt(out: str, rank: int, world: int, port: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    from ttasr import InternalLearning

    ad = InternalLearning(_tiny_model(), max_steps=4, batch_size=2, patch_size=16, lr=1e-3, progress=False,
                          mode="multi", seed=5)
    ad.fit(_photos())
    torch.save({"weights": ad.results[0].weights, "losses": [h["loss"] for h in ad.results[0].history]},
               f"{out}/rank{rank}of{world}.pt")
    if world > 1:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_ranks_keep_identical_weights_that_see_both_ranks_batches(tmp_path):
    port = _free_port()
    code = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, {tests!r}); import test_ddp; "
            "test_ddp._adapt({out!r}, {rank}, {world}, {port})")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code.format(tests=str(ROOT / "tests"), out=str(tmp_path),
                                                                   rank=r, world=2, port=port)], env=env, cwd=ROOT)
             for r in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks, so that rank 0's first loss matches to the bit
    try:
        _adapt(str(tmp_path), 0, 1, port)
    finally:
        torch.set_num_threads(threads)
    r0, r1 = (torch.load(tmp_path / f"rank{r}of2.pt") for r in range(2))
    single = torch.load(tmp_path / "rank0of1.pt")
    # the ranks drew different batches ...
    assert r0["losses"] != r1["losses"]
    # ... yet hold the same weights: the gradients were averaged
    for k in r0["weights"]:
        assert torch.allclose(r0["weights"][k], r1["weights"][k], atol=1e-7), k
    # rank 0 drew the one-process run's batches, but its steps also used rank 1's gradients
    assert r0["losses"][0] == pytest.approx(single["losses"][0], abs=1e-7)
    assert any(not torch.allclose(r0["weights"][k], single["weights"][k], atol=1e-6) for k in r0["weights"])


def test_torchrun_adapt_runs_one_ddp_adaptation_and_rank_0_writes(tiny_file, tmp_path):
    from PIL import Image

    from skimage import data

    src = tmp_path / "lr"
    src.mkdir()
    Image.fromarray(data.astronaut()[100:196, 180:276]).save(src / "a.png")
    Image.fromarray(data.astronaut()[200:296, 100:196]).save(src / "b.png")
    out, weights = tmp_path / "out", tmp_path / "adapted.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = ["-m", "ttasr", "adapt", str(src), "-m", str(tiny_file), "--method", "internal", "--max-steps", "3",
            "--batch-size", "2", "--patch-size", "16", "--mode", "multi", "-o", str(out), "--save-model",
            str(weights)]
    result = subprocess.run([*torchrun, *args], env=env, timeout=600, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["a_internal.png", "b_internal.png"] and weights.is_file()
    single = subprocess.run([*torchrun, *args[:-6], "--mode", "single", "-o", str(tmp_path / "x")], env=env,
                            timeout=600, capture_output=True, text=True, cwd=ROOT)
    assert single.returncode != 0 and "--mode multi" in single.stderr
