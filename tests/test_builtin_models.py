"""Built-in models: shipped files, safe loading, sensible predictions, name resolution, CLI listing.

No training here: the checkpoints are those trained by scripts/train_builtin_models.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from unet_core.builtin_models import (
    BUILTIN_DIR,
    BUILTIN_MODELS,
    builtin_model_path,
    list_builtin_models,
    resolve_model_source,
)
from unet_core.errors import InputError

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ROOT = Path(__file__).resolve().parents[1]


def test_registry_names_and_files():
    assert [m.name for m in list_builtin_models()] == ["nuclei", "membranes"]
    for m in list_builtin_models():
        path = builtin_model_path(m.name)
        assert path == BUILTIN_DIR / m.file and path.parent.parent.name == "unet_core"
        assert path.stat().st_size < 10e6
    assert sum(p.stat().st_size for p in BUILTIN_DIR.glob("*.pt")) < 20e6


def test_files_are_package_data():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = cfg["options.package_data"]["unet_core"].split()
    for m in list_builtin_models():
        assert any(Path("builtin", m.file).match(p) for p in patterns)


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_loads_safely_with_provenance(name):
    from unet_core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(builtin_model_path(name))  # weights_only loading + digest check
    entry = BUILTIN_MODELS[name]
    assert ckpt.config.in_channels == entry.channels
    assert ckpt.meta["builtin_name"] == name
    assert ckpt.meta["provenance"] and "command" in ckpt.meta["recipe"]
    for scores in ckpt.meta["quality"].values():
        assert {"ap50", "ap70", "foreground_iou"} <= set(scores)


def _fg_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.logical_and(pred, truth).sum() / np.logical_or(pred, truth).sum())


# Bounds: the foreground IoU each shipped model reaches on these held-out images (measured when
# they were trained: nuclei 0.913, membranes 0.881) minus a margin of about 0.05 for torch and
# platform differences. Predicting everything as foreground scores 0.25 (nuclei) and 0.67
# (membranes) on the same images (test_bounds_beat_trivial_predictions).
CASES = {
    "nuclei": ("nuclei", 0.85),
    "membranes": ("membranes", 0.83),
}


def _held_out(kind: str) -> tuple[np.ndarray, np.ndarray]:
    from unet_core.sample_data import MembraneStyle, NucleiStyle, render_nuclei, synthetic_membranes

    if kind == "nuclei":  # seed and style never used in training (seeds 1000-2003, random styles)
        return render_nuclei((128, 128), NucleiStyle(radius=(6.0, 12.0), blotches=0.1), seed=77)
    return synthetic_membranes((128, 128), MembraneStyle(cell_diameter=30.0), seed=77)


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_zero_shot_prediction_is_sensible(name):
    from unet_core.checkpoint import load_checkpoint
    from unet_core.postprocess import probabilities_to_instances
    from unet_core.tiling import predict_tiled

    kind, bound = CASES[name]
    image, truth = _held_out(kind)
    model = load_checkpoint(resolve_model_source(name)).model
    probs = predict_tiled(model, image, device="cpu")
    assert probs.shape == (2, *image.shape) and np.allclose(probs.sum(0), 1.0, atol=1e-4)
    pred = probabilities_to_instances(probs, split_touching=BUILTIN_MODELS[name].split_touching)
    assert _fg_iou(pred > 0, truth > 0) > bound
    assert 0.5 * truth.max() < pred.max() < 1.5 * truth.max()


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_bounds_beat_trivial_predictions(name):
    kind, bound = CASES[name]
    _, truth = _held_out(kind)
    assert _fg_iou(np.ones(truth.shape, bool), truth > 0) < bound - 0.05


def test_resolve_names_and_paths(tmp_path, monkeypatch):
    assert resolve_model_source("nuclei") == builtin_model_path("nuclei")
    own = tmp_path / "mine.pt"
    own.write_bytes(b"x")
    assert resolve_model_source(own) == own
    assert resolve_model_source(str(own)) == own
    monkeypatch.chdir(tmp_path)
    (tmp_path / "membranes").write_bytes(b"x")  # an existing file wins over a built-in name
    assert resolve_model_source("membranes") == Path("membranes")


@pytest.mark.parametrize("bad", ["nucleus", "missing/model.pt"])
def test_resolve_unknown_lists_names(bad):
    with pytest.raises(InputError) as info:
        resolve_model_source(bad)
    assert "nuclei" in str(info.value) and "membranes" in str(info.value) and bad in str(info.value)
    with pytest.raises(InputError, match="nuclei, membranes"):
        builtin_model_path(bad)


def test_resolve_folder(tmp_path):
    with pytest.raises(InputError, match="folder"):
        resolve_model_source(tmp_path)


def test_builtin_models_module_is_torch_free():
    import os
    import subprocess

    code = "import sys, unet_core.builtin_models; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.stdout.strip() == "False", r.stderr


def test_cli_models_lists_both(capsys):
    from unet_core.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for m in list_builtin_models():
        assert f"{m.name}: {m.description}" in out
        assert f"{builtin_model_path(m.name).stat().st_size / 1e6:.1f} MB" in out
    assert "AP@0.5" in out and "ISBI 2012 slices 20-29" in out
    assert main(["models", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == ["nuclei", "membranes"]
    assert all(e["channels"] == 1 and e["quality"] for e in entries)
