"""One model-source chooser for the Train and Predict widgets."""

from __future__ import annotations

import pytest
from gui_support import cpu_only, open_widget, project_home, registry  # noqa: F401

pytestmark = pytest.mark.gui


def test_train_and_predict_share_the_chooser(make_napari_viewer, tmp_path, cpu_only, project_home, registry, monkeypatch):  # noqa: F811
    from napari_unet._model_source import (
        BUILTIN_PREFIX,
        CHECKPOINT_FILE,
        NEW_MODEL,
        ModelSourceChooser,
    )
    from napari_unet._registry import ModelEntry
    from unet_core.builtin_models import list_builtin_models
    from unet_core.errors import InputError

    viewer = make_napari_viewer()
    train, predict = open_widget(viewer, "Train"), open_widget(viewer, "Predict")
    assert isinstance(train.model_source, ModelSourceChooser) and isinstance(predict.model_source, ModelSourceChooser)
    builtins = [BUILTIN_PREFIX + m.name for m in list_builtin_models()]  # nuclei, membranes
    assert len(builtins) == 2
    assert train.model_source.items() == [NEW_MODEL, CHECKPOINT_FILE, *builtins]
    assert predict.model_source.items() == [*builtins, CHECKPOINT_FILE]
    assert train.init_from() is None and train.model_form.isEnabled()
    assert predict.model_combo.currentText() == builtins[0]  # a usable model from the start
    predict.model_combo.setCurrentText(CHECKPOINT_FILE)
    with pytest.raises(InputError, match="not found"):
        predict.model_source_value()

    saved = tmp_path / "a.pt"
    saved.write_bytes(b"")
    registry.add(ModelEntry("a", object(), saved))
    registry.add(ModelEntry("unsaved", object(), None))
    # training keeps its choice and lists only saved models; prediction switches to the newest
    assert train.source_combo.currentText() == NEW_MODEL
    assert train.model_source.items() == [NEW_MODEL, CHECKPOINT_FILE, "this session: a", *builtins]
    assert predict.model_combo.currentText() == "this session: unsaved"
    assert predict.model_source.items() == ["this session: unsaved", "this session: a", *builtins, CHECKPOINT_FILE]
    model, checkpoint = predict.model_source_value()
    assert model is registry.get("unsaved").model and checkpoint is None

    train.source_combo.setCurrentText("this session: a")
    assert train.init_from() == saved and not train.model_form.isEnabled()
    train.model_source.set_checkpoint(tmp_path / "missing.pt")
    assert train.checkpoint_edit.text() == str(tmp_path / "missing.pt") and train.checkpoint_edit.isEnabled()
    with pytest.raises(InputError, match="fine-tune"):
        train.init_from()
    predict.set_checkpoint(saved)
    assert predict.model_source_value() == (None, saved)
