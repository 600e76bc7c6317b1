"""The command line: the whole loop on tiny data, and one-line errors with non-zero exit."""

import subprocess
import sys

import numpy as np
import pytest

from unet_core.cli import main
from unet_core.io import read_tiff, write_tiff


@pytest.fixture
def files(tmp_path, sample):
    image, labels = sample
    write_tiff(tmp_path / "img.tif", image, pixel_size=(0.65, 0.65))
    write_tiff(tmp_path / "lab.tif", labels)
    return tmp_path


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("weights", "train", "predict", "demo"):
        assert cmd in out


def test_weights_train_predict(files, capsys):
    d = files
    assert main(["weights", str(d / "lab.tif"), "-o", str(d / "w.tif")]) == 0
    w, _ = read_tiff(d / "w.tif")
    assert w.dtype == np.float32 and w.shape == (128, 128) and w.max() > 1
    assert main(["train", "--image", str(d / "img.tif"), "--labels", str(d / "lab.tif"), "-o", str(d / "m.pt"),
                 "--iterations", "3", "--depth", "2", "--base-channels", "4", "--tile-size", "32"]) == 0
    assert main(["predict", str(d / "m.pt"), str(d / "img.tif"), "-o", str(d / "pred.tif"),
                 "--probabilities", str(d / "prob.tif")]) == 0
    pred, meta = read_tiff(d / "pred.tif")
    assert pred.shape == (128, 128) and pred.dtype.kind == "u"
    assert meta.pixel_size == pytest.approx((0.65, 0.65), rel=1e-4)
    prob, _ = read_tiff(d / "prob.tif")
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "unet_core.cli", *args], capture_output=True, text=True, timeout=300)


def test_missing_file_is_one_line_error(tmp_path):
    r = _cli("weights", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "w.tif"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "no such file" in r.stderr


def test_shape_mismatch_is_one_line_error(files):
    d = files
    write_tiff(d / "small.tif", np.zeros((64, 64), np.uint16))
    r = _cli("train", "--image", str(d / "small.tif"), "--labels", str(d / "lab.tif"), "-o", str(d / "m.pt"), "--iterations", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "differ" in r.stderr


def test_refuses_to_overwrite(files):
    d = files
    (d / "w.tif").write_bytes(b"keep me")
    r = _cli("weights", str(d / "lab.tif"), "-o", str(d / "w.tif"))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (d / "w.tif").read_bytes() == b"keep me"


def test_predict_postprocess_flags_come_from_the_dataclass(capsys):
    import dataclasses

    from unet_core.config import PostprocessConfig

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(PostprocessConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, flag
        assert f"(default: {f.default})" in out.split(flag, 1)[1], flag
    assert "--min-distance" in out and "--no-split-touching" in out


def test_predict_postprocess_flags_reach_the_pipeline(files, monkeypatch):
    from unet_core import pipeline
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig, PostprocessConfig
    from unet_core.models import build_model

    d = files
    save_checkpoint(d / "m.pt", build_model(ModelConfig(depth=1, base_channels=2, padding="same")))
    seen = []
    real = pipeline.iter_segment

    def spy(model, image, postprocess, **kw):
        seen.append(postprocess)
        return real(model, image, postprocess, **kw)

    monkeypatch.setattr(pipeline, "iter_segment", spy)
    args = ["predict", str(d / "m.pt"), str(d / "img.tif"), "-o", str(d / "p.tif"), "--device", "cpu"]
    assert main([*args, "--threshold", "0.25", "--min-distance", "7", "--no-split", "--min-size", "0"]) == 0
    assert seen[-1] == PostprocessConfig(threshold=0.25, split_touching=False, min_size=0, min_distance=7)
    assert main([*args, "--overwrite"]) == 0
    assert seen[-1] == PostprocessConfig()


def test_threshold_nan_is_one_line_error(files):
    d = files
    r = _cli("predict", str(d / "m.pt"), str(d / "img.tif"), "-o", str(d / "p.tif"), "--threshold", "nan")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "threshold" in r.stderr and "[0, 1)" in r.stderr
    assert not (d / "p.tif").exists()


def test_train_options_for_few_annotations_reach_the_run(files):
    """--target, --region-rule, --sparse-ring and --self-supervised end up in the saved config."""
    from unet_core.checkpoint import load_checkpoint

    d = files
    assert main(["train", "--image", str(d / "img.tif"), "--labels", str(d / "lab.tif"), "-o", str(d / "m.pt"),
                 "--iterations", "2", "--depth", "2", "--base-channels", "4", "--tile-size", "32",
                 "--target", "three_class", "--region-rule", "ring", "--sparse-ring", "5",
                 "--self-supervised", "0.5"]) == 0
    ckpt = load_checkpoint(d / "m.pt")
    cfg = ckpt.meta["train_config"]
    assert (cfg["target"], cfg["region_rule"], cfg["sparse_ring"], cfg["self_supervised"]) == (
        "three_class", "ring", 5, 0.5)
    assert ckpt.config.n_classes == 3


def test_bad_self_supervised_weight_is_one_line(files, capsys):
    d = files
    assert main(["train", "--image", str(d / "img.tif"), "--labels", str(d / "lab.tif"), "-o", str(d / "m.pt"),
                 "--self-supervised", "-2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "self_supervised must be a number from 0" in err[0]
