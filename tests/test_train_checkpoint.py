"""Training checkpoints: provenance, fine-tuning, exact resume, refusal of unsafe files, CLI."""

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from unet_core.checkpoint import load_checkpoint
from unet_core.config import ModelConfig, TrainConfig
from unet_core.errors import CheckpointError
from unet_core.progress import run_to_end
from unet_core.training.data import TrainingPair, fingerprint
from unet_core.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


CFG = TrainConfig(
    model=ModelConfig(depth=1, base_channels=4, batch_norm=True, dropout=0.2),
    iterations=6, tile_size=24, batch_size=2, val_fraction=0.3, val_every=2, device="cpu",
)


@pytest.fixture
def pair(sample):
    image, labels = sample
    return TrainingPair(image[:80, :80], labels[:80, :80], name="nuclei")


def run(gen):
    """Drain a training generator: (result, progress records)."""
    records = []
    return run_to_end(gen, records.append), records


def test_checkpoint_holds_weights_config_and_provenance(tmp_path, pair):
    result, _ = run(train([pair], CFG, output=tmp_path / "m.pt"))
    ck = load_checkpoint(result.checkpoint)
    assert ck.config == result.model.config
    assert ck.config.class_names == ("background", "foreground")
    assert ck.config.normalization == CFG.model.normalization
    meta = ck.meta
    assert meta["iterations"] == 6 and meta["kind"] == "last" and meta["created"]
    assert meta["data"][0]["fingerprint"] == fingerprint(pair.image, pair.labels, None)
    assert meta["train_config"]["tile_size"] == 24 and meta["device"] == "cpu"
    assert set(meta["metrics"]) >= {"loss", "val_foreground_iou", "val_ap50"}
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k])
    assert ck.train_state["step"] == 6
    best = load_checkpoint(result.best_checkpoint)
    assert best.meta["kind"] == "best" and best.train_state is None


def test_resumed_run_equals_uninterrupted_run(tmp_path, pair):
    full, full_rec = run(train([pair], CFG, output=tmp_path / "full.pt"))
    gen = train([pair], CFG, output=tmp_path / "part.pt")
    n_train = 0
    while n_train < 3:  # stop after the third step (before its validation)
        if next(gen).stage == "train":
            n_train += 1
    gen.close()
    assert load_checkpoint(tmp_path / "part.pt").train_state["step"] == 3
    resumed, res_rec = run(train([pair], replace(CFG, iterations=999), output=tmp_path / "part.pt", resume=tmp_path / "part.pt"))
    assert resumed.steps == 6  # the saved plan (6 iterations) wins over the new config
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    losses = lambda recs, lo: [r.metrics["loss"] for r in recs if r.stage == "train" and r.step > lo]  # noqa: E731
    assert losses(full_rec, 3) == losses(res_rec, 3)
    assert full.metrics == resumed.metrics
    # resuming a finished run changes nothing and keeps its numbers
    again, rec = run(train([pair], CFG, output=tmp_path / "part.pt", resume=tmp_path / "part.pt"))
    assert again.steps == 6 and again.metrics == full.metrics
    assert [r.stage for r in rec] == ["save"]


def test_fine_tune_from_a_checkpoint_with_new_annotations(tmp_path, pair, sample):
    first, _ = run(train([pair], CFG, output=tmp_path / "a.pt"))
    image, labels = sample
    new = TrainingPair(image[40:], labels[40:], name="more")
    other_model = replace(CFG, model=ModelConfig(depth=2, base_channels=8))
    tuned, _ = run(train([pair, new], other_model, output=tmp_path / "b.pt", init_from=tmp_path / "a.pt"))
    assert tuned.model.config == first.model.config  # the checkpoint's architecture is kept
    ck = load_checkpoint(tmp_path / "b.pt")
    assert ck.meta["init_from"] == str(tmp_path / "a.pt") and len(ck.meta["data"]) == 2


def test_resume_refuses_files_without_training_state(tmp_path, pair):
    result, _ = run(train([pair], CFG, output=tmp_path / "m.pt"))
    with pytest.raises(CheckpointError, match="no training state"):
        run(train([pair], CFG, resume=result.best_checkpoint))


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/napari_unet_train_pwned",))


def test_tampered_and_malicious_checkpoints_are_refused(tmp_path, pair):
    import os

    result, _ = run(train([pair], CFG, output=tmp_path / "m.pt"))
    payload = torch.load(result.checkpoint, weights_only=True)
    payload["train_state"]["evil"] = _Evil()
    torch.save(payload, tmp_path / "evil.pt")
    for path in (tmp_path / "evil.pt",):
        with pytest.raises(CheckpointError, match="refused"):
            run(train([pair], CFG, resume=path))
        with pytest.raises(CheckpointError, match="refused"):
            run(train([pair], CFG, init_from=path))
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        run(train([pair], CFG, init_from=tmp_path / "raw.pkl"))
    data = bytearray(result.checkpoint.read_bytes())
    for frac in (0.3, 0.5, 0.7):  # several places: one may be zip padding that nothing reads
        at = int(len(data) * frac)
        data[at : at + 64] = b"\0" * 64
    (tmp_path / "broken.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged|not a readable"):
        run(train([pair], CFG, resume=tmp_path / "broken.pt"))
    assert not os.path.exists("/tmp/napari_unet_train_pwned")


def test_cli_train_resume_and_summary(tmp_path, sample, capsys):
    from unet_core.cli import main
    from unet_core.io import write_tiff

    image, labels = sample
    write_tiff(tmp_path / "img.tif", image[:80, :80])
    write_tiff(tmp_path / "lab.tif", labels[:80, :80])
    mask = np.zeros((80, 80), np.uint8)
    mask[:60] = 1
    write_tiff(tmp_path / "mask.tif", mask)
    args = ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
            "--mask", str(tmp_path / "mask.tif"), "-o", str(tmp_path / "m.pt"), "--iterations", "3",
            "--depth", "1", "--base-channels", "4", "--tile-size", "24", "--batch-size", "2",
            "--val-fraction", "0.3", "--val-every", "2", "--device", "cpu", "--seed", "1", "--arch", "unet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps" in out and "validation:" in out and "best checkpoint" in out
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck.meta["train_config"]["seed"] == 1 and ck.meta["train_config"]["batch_size"] == 2
    assert main(args + ["--resume", str(tmp_path / "m.pt")]) == 0  # finished run: nothing left to do
    write_tiff(tmp_path / "cls.tif", (labels[:80, :80] > 0).astype(np.uint8))
    tune = [a if a != str(tmp_path / "lab.tif") else str(tmp_path / "cls.tif") for a in args[:-4]]
    assert main(tune + ["--semantic", "--freeze-encoder", "--from", str(tmp_path / "m.pt"),
                        "-o", str(tmp_path / "t.pt"), "--loss", "wce+0.5*dice"]) == 0
    capsys.readouterr()
    assert main(args[:-4] + ["--semantic", "--from", str(tmp_path / "m.pt"), "-o", str(tmp_path / "u.pt")]) == 2
    assert "class id" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--loss", "no-such-loss"]) == 2


def test_cli_ctrl_c_stops_after_the_step_and_saves(tmp_path, sample, capsys, monkeypatch):
    import signal

    import unet_core.cli.train as cli_train
    from unet_core.cli import main
    from unet_core.io import write_tiff

    image, labels = sample
    write_tiff(tmp_path / "img.tif", image[:80, :80])
    write_tiff(tmp_path / "lab.tif", labels[:80, :80])
    real_drain = cli_train.drain

    def interrupted(gen):
        """Passes the records on; Ctrl-C after the second step."""
        while True:
            try:
                record = next(gen)
            except StopIteration as done:
                return done.value
            if record.stage == "train" and record.step == 2:
                signal.raise_signal(signal.SIGINT)
            yield record

    monkeypatch.setattr(cli_train, "drain", lambda gen, **kw: real_drain(interrupted(gen), **kw))
    args = ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
            "-o", str(tmp_path / "m.pt"), "--iterations", "500", "--depth", "1", "--base-channels", "4",
            "--tile-size", "24", "--batch-size", "2", "--val-fraction", "0", "--device", "cpu", "--arch", "unet"]
    before = signal.getsignal(signal.SIGINT)
    assert main(args) == 130
    assert signal.getsignal(signal.SIGINT) is before
    assert "trained 2 steps" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "m.pt").train_state["step"] == 2
