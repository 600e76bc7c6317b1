"""Bad inputs x commands: exit status 2, one line on stderr, no traceback, nothing left behind.

Run in-process (``unet_core.cli.main``); read-only folders and full disks are simulated by
making the write raise the ``OSError`` the system would (EROFS, ENOSPC), or torch's RuntimeError.
"""

from __future__ import annotations

import errno
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from unet_core import checkpoint, memory
from unet_core.checkpoint import _digest, save_checkpoint
from unet_core.cli import main
from unet_core.config import ModelConfig, TrainConfig
from unet_core.io import write_tiff
from unet_core.models import build_model
from unet_core.progress import run_to_end
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = ["--depth", "2", "--base-channels", "4", "--tile-size", "32"]
PROGRESS = re.compile(r"^\s*\w+: +\d+% ")


def _png() -> bytes:
    raw = b"".join(b"\0" + bytes(8) for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")

    ihdr = (8).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def data(tmp_path_factory, sample):
    """Inputs in a folder: images, labels, broken files, a model and a resumable checkpoint."""
    d = tmp_path_factory.mktemp("hardening")
    image, labels = sample
    image, labels = image[:64, :64], labels[:64, :64]
    write_tiff(d / "img.tif", image)
    write_tiff(d / "lab.tif", labels)
    tifffile.imwrite(d / "rgb.tif", np.stack([image] * 3, -1), photometric="rgb")
    good = (d / "img.tif").read_bytes()
    (d / "trunc.tif").write_bytes(good[:200])
    (d / "random.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (d / "x.png").write_bytes(_png())
    torch.manual_seed(0)
    save_checkpoint(d / "m.pt", build_model(ModelConfig(depth=2, base_channels=4)))
    cfg = TrainConfig(model=ModelConfig(depth=2, base_channels=4), iterations=2, tile_size=32, batch_size=2,
                      val_fraction=0)
    run_to_end(train([TrainingPair(image, labels)], cfg, output=d / "run.pt"))
    payload = torch.load(d / "run.pt", weights_only=True)
    for name, change in (("no-opt", lambda s: s.pop("optimizer")),
                         ("bad-rng", lambda s: s.__setitem__("rng_torch", torch.zeros(7, dtype=torch.uint8)))):
        p = {**payload, "train_state": dict(payload["train_state"])}
        change(p["train_state"])
        p["digest"] = _digest(p)  # edited "properly": only the state check can tell
        torch.save(p, d / f"{name}.pt")
    return d


def _fail_write(kind: str):
    """A replacement for a write function that fails like a read-only folder or a full disk."""

    def fail(*_args, **_kwargs):
        if kind == "torch":
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        code = errno.EROFS if kind == "erofs" else errno.ENOSPC
        raise OSError(code, os.strerror(code))

    return fail


# (id, command line with {d} for the data folder and {o} for the output, expected text,
#  patches: (object, attribute, replacement factory), ran: whether work (progress) precedes the error)
CASES = [
    ("weights-truncated", "weights {d}/trunc.tif -o {o}.tif", "not a readable TIFF", None),
    ("weights-random", "weights {d}/random.bin -o {o}.tif", "not a readable TIFF", None),
    ("weights-png", "weights {d}/x.png -o {o}.tif", "not a readable TIFF", None),
    ("weights-rgb", "weights {d}/rgb.tif -o {o}.tif", "channel axis", None),
    ("weights-sigma", "weights {d}/lab.tif -o {o}.tif --sigma 1e-300", "sigma must be", None),
    ("weights-sigma-huge", "weights {d}/lab.tif -o {o}.tif --sigma 1e308", "sigma must be", None),
    ("weights-w0-nan", "weights {d}/lab.tif -o {o}.tif --w0 nan", "w0 must be", None),
    ("weights-readonly", "weights {d}/lab.tif -o {o}.tif", "read-only", ("tifffile", "imwrite", "erofs")),
    ("weights-full", "weights {d}/lab.tif -o {o}.tif", "disk is full", ("tifffile", "imwrite", "enospc")),
    ("predict-ckpt-png", "predict {d}/x.png {d}/img.tif -o {o}.tif", "not a napari-unet checkpoint (a PNG", None),
    ("predict-ckpt-random", "predict {d}/random.bin {d}/img.tif -o {o}.tif", "not a napari-unet checkpoint", None),
    ("predict-ckpt-tiff", "predict {d}/img.tif {d}/img.tif -o {o}.tif", "not a napari-unet checkpoint (a TIFF", None),
    ("predict-truncated", "predict {d}/m.pt {d}/trunc.tif -o {o}.tif", "not a readable TIFF", None),
    ("predict-rgb-1ch-model", "predict {d}/m.pt {d}/rgb.tif -o {o}.tif", "3 channel(s), the model reads 1", None),
    ("predict-channel-axis", "predict {d}/m.pt {d}/img.tif -o {o}.tif --channel-axis 3", "give an axis from 0 to 1", None),
    ("predict-too-large", "predict {d}/m.pt {d}/img.tif -o {o}.tif", "crop it into parts",
     (memory, "available_ram", "tiny")),
    ("predict-threshold-nan", "predict {d}/m.pt {d}/img.tif -o {o}.tif --threshold nan", "threshold", None),
    ("predict-min-size", "predict {d}/m.pt {d}/img.tif -o {o}.tif --min-size -1", "min_size", None),
    ("predict-tile-1", "predict {d}/m.pt {d}/img.tif -o {o}.tif --tile-size 1", "range 16 to 16384", None),
    ("predict-readonly", "predict {d}/m.pt {d}/img.tif -o {o}.tif", "read-only", ("tifffile", "imwrite", "erofs")),
    ("predict-full", "predict {d}/m.pt {d}/img.tif -o {o}.tif", "disk is full", ("tifffile", "imwrite", "enospc")),
    ("train-lr-nan", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --lr nan", "learning_rate", None),
    ("train-seed", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --seed -1", "from 0 to", None),
    ("train-depth-0", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --depth 0", "range 1 to 8", None),
    ("train-depth-30", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --depth 30", "range 1 to 8", None),
    ("train-iterations-0", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --iterations 0", "from 1 to", None),
    ("train-tile-1", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --tile-size 1", "from 8 to", None),
    ("train-channel-axis", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --channel-axis 3",
     "give an axis from 0 to 1", None),
    ("train-resume-options", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --resume {d}/run.pt "
     "--iterations 9 --lr 0.1", "--resume continues the saved run", None),
    ("train-resume-no-optimizer", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --resume {d}/no-opt.pt",
     "'optimizer' is missing", None),
    ("train-resume-bad-rng", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --resume {d}/bad-rng.pt",
     "rng_torch", None),
    ("train-resume-png", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --resume {d}/x.png",
     "not a napari-unet checkpoint", None),
    ("train-too-large-net", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --depth 8 --base-channels 2048",
     "to train with", None),
    ("train-readonly", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt " + " ".join(SMALL),
     "read-only", ("io", "check_writable", "erofs")),
    ("train-full", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --iterations 1 --val-fraction 0 "
     + " ".join(SMALL), "disk is full", (torch, "save", "enospc")),
    ("train-torch-write", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --iterations 1 --val-fraction 0 "
     + " ".join(SMALL), "torch could not write", (torch, "save", "torch")),
    ("bad-option-value", "train --image {d}/img.tif --labels {d}/lab.tif -o {o}.pt --lr abc", "invalid float", None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_left(case, data, tmp_path, monkeypatch, capsys):
    name, line, expected, patch = case
    out = tmp_path / "out"
    if patch is not None:
        target, attr, kind = patch
        if target == "io":
            from unet_core import io as target
        elif target == "tifffile":
            target = tifffile
        replacement = (lambda: 10**5) if kind == "tiny" else _fail_write(kind)
        if attr == "check_writable":  # the up-front check sees a read-only folder
            def replacement(path):
                raise target.write_error(path, OSError(errno.EROFS, os.strerror(errno.EROFS)))
        monkeypatch.setattr(target, attr, replacement)
    args = line.format(d=data, o=out).split()
    if args[0] == "train":
        args += ["--device", "cpu"]
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse: bad option values
        rc = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not PROGRESS.match(ln)]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and expected in lines[0], err
    assert lines[0] == err.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir()), f"left behind: {list(tmp_path.iterdir())}"


def test_refuses_existing_best_checkpoint_and_demo_files(data, tmp_path, capsys):
    (tmp_path / "x.best.pt").write_bytes(b"keep")
    rc = main(["train", "--image", str(data / "img.tif"), "--labels", str(data / "lab.tif"),
               "-o", str(tmp_path / "x.pt"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "x.best.pt exists" in err and len(err.splitlines()) == 1
    assert (tmp_path / "x.best.pt").read_bytes() == b"keep" and not (tmp_path / "x.pt").exists()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "model.pt").write_bytes(b"keep")
    rc = main(["demo", "-o", str(tmp_path / "demo"), "--iterations", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "model.pt" in err and "--overwrite" in err
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["model.pt"]
    assert (tmp_path / "demo" / "model.pt").read_bytes() == b"keep"


def test_second_train_with_same_output_is_refused(data, tmp_path, capsys):
    lock = tmp_path / "x.pt.lock"
    lock.write_text(f"{os.getpid()}\n")  # a running process holds it
    rc = main(["train", "--image", str(data / "img.tif"), "--labels", str(data / "lab.tif"),
               "-o", str(tmp_path / "x.pt"), "--iterations", "1", "--device", "cpu", *SMALL])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "being written by another run" in err and len(err.splitlines()) == 1
    assert lock.read_text().strip() == str(os.getpid()) and not (tmp_path / "x.pt").exists()


def test_stale_lock_is_taken_over_and_removed(data, tmp_path, capsys):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "x.pt.lock").write_text(dead.stdout)
    rc = main(["train", "--image", str(data / "img.tif"), "--labels", str(data / "lab.tif"),
               "-o", str(tmp_path / "x.pt"), "--iterations", "1", "--val-fraction", "0", "--device", "cpu", *SMALL])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_rgb_image_reads_as_channels_in_every_command(data, tmp_path, capsys):
    """An RGB TIFF (axes YXS) trains a 3-channel model, which predicts it (labels without channels)."""
    from unet_core.checkpoint import load_checkpoint
    from unet_core.io import read_tiff

    assert main(["train", "--image", str(data / "rgb.tif"), "--labels", str(data / "lab.tif"),
                 "-o", str(tmp_path / "rgb.pt"), "--iterations", "1", "--val-fraction", "0", "--device", "cpu",
                 *SMALL]) == 0
    assert load_checkpoint(tmp_path / "rgb.pt").config.in_channels == 3
    assert main(["predict", str(tmp_path / "rgb.pt"), str(data / "rgb.tif"), "-o", str(tmp_path / "l.tif")]) == 0
    labels, meta = read_tiff(tmp_path / "l.tif")
    assert labels.shape == (64, 64) and meta.axes == "YX"
    capsys.readouterr()


def test_stale_temporaries_are_cleaned_and_others_kept(tmp_path):
    import time

    from unet_core.io import remove_stale_temporaries

    target = tmp_path / "a.tif"
    old = time.time() - 3600
    stale_legacy = tmp_path / ".a.tif.k2j4h5g1.tmp"
    stale_dead = tmp_path / ".a.tif.999999999.abcd1234.tmp"
    live = tmp_path / f".a.tif.{os.getpid()}.abcd1234.tmp"
    young = tmp_path / ".a.tif.zzzzzzzz.tmp"
    other = [tmp_path / ".b.tif.k2j4h5g1.tmp", tmp_path / "a.tif.k2j4h5g1.tmp", tmp_path / ".a.tif.notes.tmp"]
    for p in (stale_legacy, stale_dead, live, young, *other):
        p.write_bytes(b"x")
        if p is not young:
            os.utime(p, (old, old))
    write_tiff(target, np.zeros((4, 4), np.uint8))
    left = {p.name for p in tmp_path.iterdir()}
    assert stale_legacy.name not in left and stale_dead.name not in left
    assert {live.name, young.name, "a.tif", *(p.name for p in other)} <= left
    assert remove_stale_temporaries(target) == []


def test_checkpoint_v1_warns_and_pickle_objects_keep_their_message(tmp_path, caplog):
    import pickle

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pt", build_model(ModelConfig(depth=1, base_channels=2)))
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 1
    del payload["digest"]
    torch.save(payload, tmp_path / "v1.pt")
    with caplog.at_level("WARNING"):
        checkpoint.load_checkpoint(tmp_path / "v1.pt")
    assert "without a checksum" in caplog.text
    (tmp_path / "obj.pkl").write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(checkpoint.CheckpointError, match="unsafe unpickling.*pathlib"):
        checkpoint.load_checkpoint(tmp_path / "obj.pkl")
