"""Built-in names and bioimage.io packages are accepted wherever a checkpoint path is."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.cli import main
from unet_core.errors import InputError
from unet_core.io import read_tiff, write_tiff
from unet_core.sample_data import synthetic_nuclei
from unet_core.sources import load_model, load_trainable

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    image, labels = synthetic_nuclei((96, 96), seed=11)
    write_tiff(d / "img.tif", image)
    write_tiff(d / "lab.tif", labels)
    return d


def test_predict_with_a_builtin_name(images, tmp_path, capsys):
    rc = main(["predict", "nuclei", str(images / "img.tif"), "-o", str(tmp_path / "lab.tif"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    labels, _ = read_tiff(tmp_path / "lab.tif")
    assert labels.shape == (96, 96) and labels.max() >= 3  # the sample has several nuclei


def test_finetune_from_a_builtin_name(images, tmp_path, capsys):
    rc = main(["train", "--image", str(images / "img.tif"), "--labels", str(images / "lab.tif"),
               "--from", "membranes", "-o", str(tmp_path / "m.pt"), "--iterations", "2", "--tile-size", "32",
               "--batch-size", "1", "--val-fraction", "0", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    tuned = load_model(tmp_path / "m.pt")
    assert tuned.config == load_model("membranes").config  # the built-in's architecture, fine-tuned
    assert tuned.meta["init_from"] == "membranes"


def test_unknown_name_lists_the_builtins(images, tmp_path, capsys):
    rc = main(["predict", "nucleii", str(images / "img.tif"), "-o", str(tmp_path / "x.tif")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nuclei, membranes" in err and len(err.splitlines()) == 1
    with pytest.raises(InputError, match="built-in model"):
        load_trainable("nucleii")


def test_builtin_with_wrong_channel_count_says_what_to_do(tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    write_tiff(tmp_path / "rgb.tif", rgb, axes="YXS")
    rc = main(["predict", "nuclei", str(tmp_path / "rgb.tif"), "-o", str(tmp_path / "x.tif")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "3 channel(s), the model reads 1" in err
