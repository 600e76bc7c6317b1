"""The model library: trained models kept across sessions, listed with the built-in models."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from napari_unet._registry import ModelEntry, ModelRegistry, builtin_entries, keep_in_library


def _fake_builtins(folder: Path) -> types.ModuleType:
    """A stand-in for unet_core.builtin_models: one model 'nuclei-2d' whose file is in ``folder``."""
    from unet_core.errors import CheckpointError

    fake = types.ModuleType("unet_core.builtin_models")
    model = types.SimpleNamespace(name="nuclei-2d", description="fluorescent nuclei")

    def path(name):
        if not (folder / f"{name}.pt").is_file():
            raise CheckpointError(f"built-in model {name!r} is missing; reinstall napari-unet")
        return folder / f"{name}.pt"

    fake.list_builtin_models = lambda: [model]
    fake.builtin_model_path = path
    return fake


def _checkpoint(path: Path, payload: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_trained_models_survive_a_restart(tmp_path):
    library = tmp_path / "library"
    saved = _checkpoint(tmp_path / "elsewhere" / "nuclei-unet.pt")
    first = ModelRegistry(library)
    first.add(ModelEntry("nuclei-unet", object(), saved))
    first.add(ModelEntry("unsaved", object(), None))
    assert (library / "nuclei-unet.pt").read_bytes() == b"weights"
    # in the session that trained it, the session entry stands for the library copy
    assert [e.name for e in first.library()] == []
    restarted = ModelRegistry(library)  # a new napari session
    assert restarted.names() == []
    entries = restarted.library()
    assert [(e.name, e.origin, e.checkpoint) for e in entries] == [
        ("nuclei-unet", "library", library / "nuclei-unet.pt")
    ]
    assert restarted.get("nuclei-unet", origin="library") == entries[0]
    assert restarted.get("nuclei-unet") is None  # not a session model there


def test_library_copy_is_atomic_and_replaces_a_same_named_model(tmp_path):
    library = tmp_path / "library"
    keep_in_library("m", _checkpoint(tmp_path / "a.pt", b"old"), library)
    target = keep_in_library("m", _checkpoint(tmp_path / "b.pt", b"new"), library)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in library.iterdir()) == ["m.pt"]  # no temporary file left
    assert keep_in_library("m", target, library) == target  # the library file itself: no copy
    with pytest.raises(FileNotFoundError):
        keep_in_library("gone", tmp_path / "missing.pt", library)
    assert sorted(p.name for p in library.iterdir()) == ["m.pt"]


def test_builtin_models_hook(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "unet_core.builtin_models", None)  # not installed: no entries
    assert builtin_entries() == []
    fake = _fake_builtins(tmp_path)
    monkeypatch.setitem(sys.modules, "unet_core.builtin_models", fake)
    import unet_core

    monkeypatch.setattr(unet_core, "builtin_models", fake, raising=False)
    assert [(e.name, e.origin, e.description) for e in builtin_entries()] == [
        ("nuclei-2d", "builtin", "fluorescent nuclei")
    ]


@pytest.mark.gui
def test_train_and_predict_list_the_library(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_HOME", str(tmp_path / "home"))
    from qtpy.QtCore import Qt

    from napari_unet._model_source import (
        BUILTIN_PREFIX,
        CHECKPOINT_FILE,
        LIBRARY_PREFIX,
        NEW_MODEL,
        ModelSourceChooser,
    )
    from napari_unet._project import library_dir
    from napari_unet._registry import MODELS
    from unet_core.errors import InputError

    _checkpoint(library_dir() / "kept.pt")
    monkeypatch.setitem(sys.modules, "unet_core.builtin_models", _fake_builtins(tmp_path))
    MODELS.clear()
    try:
        train = ModelSourceChooser(new_model=True, saved_only=True, placeholder="", missing_hint="")
        predict = ModelSourceChooser(new_model=False, saved_only=False, placeholder="", missing_hint="")
        qtbot.addWidget(train)
        qtbot.addWidget(predict)
        kept, builtin = LIBRARY_PREFIX + "kept", BUILTIN_PREFIX + "nuclei-2d"
        assert train.items() == [NEW_MODEL, CHECKPOINT_FILE, kept, builtin]
        assert predict.items() == [kept, builtin, CHECKPOINT_FILE]
        assert predict.source().kind == "library"
        assert predict.source().checkpoint == library_dir() / "kept.pt"
        assert train.combo.itemData(3, Qt.ToolTipRole) == "fluorescent nuclei"
        assert predict.combo.itemData(0, Qt.ToolTipRole) == str(library_dir() / "kept.pt")
        train.combo.setCurrentText(builtin)
        with pytest.raises(InputError, match="reinstall"):  # its file is missing
            train.source()
        _checkpoint(tmp_path / "nuclei-2d.pt")
        assert (train.source().kind, train.source().checkpoint) == ("builtin", tmp_path / "nuclei-2d.pt")
        # a model trained now is kept in the library and listed at once
        MODELS.add(ModelEntry("fresh", object(), _checkpoint(tmp_path / "fresh.pt")))
        assert (library_dir() / "fresh.pt").is_file()
        assert predict.combo.currentText() == "this session: fresh"
        (library_dir() / "kept.pt").unlink()
        predict.combo.setCurrentText(kept)
        with pytest.raises(InputError, match="no longer in the model library"):
            predict.source()
    finally:
        train.disconnect_registry()
        predict.disconnect_registry()
        MODELS.clear()
