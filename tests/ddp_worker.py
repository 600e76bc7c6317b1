"""``napari-unet`` commands under torchrun for ``tests/test_distributed.py``, recording each rank.

Usage: ``torchrun ... tests/ddp_worker.py OUT_DIR STOP_AFTER COMMAND [; COMMAND ...]``, each
COMMAND the arguments of ``napari-unet`` (commands separated by a lone ``;``, run one after the
other in the same processes). Each rank appends to ``OUT_DIR/rank<RANK>.jsonl`` one line per
command: its exit status, and the steps and a SHA-256 digest of the model's weights when its
trainer finished. With STOP_AFTER > 0, Stop is set on rank 1 alone after STOP_AFTER steps of
the first command (the ranks must agree to stop together).
"""

import contextlib
import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import unet_core.cli.train as cli_train
from unet_core.cli import main
from unet_core.training.trainer import Trainer

RANK = int(os.environ["RANK"])
RECORD: dict = {}


def digest(state_dict) -> str:
    """SHA-256 of a state dict's names and tensor bytes (CPU, in key order)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


_finish = Trainer.finish


def finish(self):
    RECORD.update(steps=self.step, digest=digest(self.model.state_dict()))
    return _finish(self)


class StopAfter:
    """Set on rank 1 once ``n`` steps are done (``is_set`` is asked once before each step)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def is_set(self) -> bool:
        self.calls += 1
        return RANK == 1 and self.calls > self.n


def run(out: Path, stop_after: int, argv: list[str]) -> None:
    if stop_after:
        cli_train._stop_on_ctrl_c = lambda sigterm=False: contextlib.nullcontext(StopAfter(stop_after))
    else:
        cli_train._stop_on_ctrl_c = lambda sigterm=False: contextlib.nullcontext(threading.Event())
    RECORD.clear()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    with open(out / f"rank{RANK}.jsonl", "a") as fh:
        fh.write(json.dumps({"rc": rc, **RECORD}) + "\n")


if __name__ == "__main__":
    Trainer.finish = finish
    out, stop_after, rest = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    commands: list[list[str]] = [[]]
    for arg in rest:
        if arg == ";":
            commands.append([])
        else:
            commands[-1].append(arg)
    for i, argv in enumerate(commands):
        run(out, stop_after if i == 0 else 0, argv)
