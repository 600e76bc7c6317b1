"""Training with torchrun: 2 gloo processes on the CPU (``tests/ddp_worker.py`` records each rank)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unet_core.training.distributed import RankInfo, detect, session

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--device", "cpu", "--depth", "1", "--base-channels", "4", "--tile-size", "16", "--batch-size", "2"]


def _digest(state_dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _torchrun(tmp: Path, stop_after: int, *argv: str) -> list[dict]:
    """Run the worker under ``torchrun --standalone --nproc-per-node 2``; each rank's last record."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp), str(stop_after), *argv]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((tmp / f"rank{r}.jsonl").read_text().splitlines()[-1]) for r in range(2)]


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.uint16)
    for i, (y, x) in enumerate([(10, 10), (30, 40), (50, 20), (45, 50)]):
        labels[y - 5 : y + 5, x - 5 : x + 5] = i + 1
    image = (rng.normal(size=labels.shape) + 3 * (labels > 0)).astype(np.float32)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    return ["--image", "img.tif", "--labels", "lab.tif"]


def test_two_gloo_ranks_agree_save_once_and_resume(tmp_path, images):
    from unet_core.checkpoint import load_checkpoint

    # Stop reaches rank 1 alone after 2 of 4 steps: both ranks must stop on the same step
    ranks = _torchrun(tmp_path, 2, "train", *images, *SMALL, "-o", "out.pt", "--iterations", "4",
                      "--val-every", "2")
    assert [r["rc"] for r in ranks] == [130, 130]
    assert [r["steps"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # identical weights and buffers
    ckpt = load_checkpoint(tmp_path / "out.pt")
    assert not [k for k in ckpt.model.state_dict() if k.startswith("module.")]
    assert _digest(ckpt.model.state_dict()) == ranks[0]["digest"]
    assert ckpt.train_state["step"] == 2 and ckpt.meta["world_size"] == 2
    assert {p.name for p in tmp_path.glob("out*")} <= {"out.pt", "out.best.pt"}  # no temporaries

    ranks = _torchrun(tmp_path, 0, "train", *images, "--device", "cpu", "--resume", "out.pt", "-o", "out.pt")
    assert [(r["rc"], r["steps"]) for r in ranks] == [(0, 4), (0, 4)]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    resumed = load_checkpoint(tmp_path / "out.pt")
    assert resumed.train_state["step"] == 4
    assert _digest(resumed.model.state_dict()) == ranks[0]["digest"]
    assert not list(tmp_path.glob("*.lock"))


def test_detect_reads_torchrun_environment():
    assert detect({}) is None
    assert detect({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == RankInfo(1, 2, 1)
    from unet_core.errors import InputError

    with pytest.raises(InputError, match="torchrun"):
        detect({"WORLD_SIZE": "2"})
    with pytest.raises(InputError, match="outside"):
        detect({"RANK": "2", "WORLD_SIZE": "2"})


def test_one_process_session_is_a_plain_run():
    with session("cpu", environ={}) as ctx:
        assert not ctx.distributed and ctx.is_main and ctx.device == "cpu"
        assert ctx.sync.any(True) and not ctx.sync.any(False) and ctx.sync.mean(1.5) == 1.5
