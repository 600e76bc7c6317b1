"""ConfigForm: editors generated from the engine's config dataclasses, one definition of defaults."""

from __future__ import annotations

import dataclasses

import pytest

pytestmark = pytest.mark.gui


def test_round_trip_of_engine_defaults(qtbot):
    from napari_unet._config_form import ConfigForm
    from unet_core.config import ModelConfig, TrainConfig, WeightMapConfig

    for config in (TrainConfig(), ModelConfig(), WeightMapConfig()):
        form = ConfigForm(config)
        qtbot.addWidget(form)
        assert form.value() == config
        simple = [f.name for f in dataclasses.fields(config) if not dataclasses.is_dataclass(getattr(config, f.name))
                  and not isinstance(getattr(config, f.name), tuple)]
        assert set(form.editors) == set(simple)


def test_edits_and_optional_numbers(qtbot):
    from napari_unet._config_form import ConfigForm, field_docs
    from unet_core.config import TrainConfig

    form = ConfigForm(TrainConfig(), exclude=("model", "weights"))
    qtbot.addWidget(form)
    form.set("iterations", 7)
    form.set("learning_rate", 0.0005)
    form.set("time_limit", 12.5)
    form.set("augment", False)
    form.set("optimizer", "sgd")
    cfg = form.value()
    assert (cfg.iterations, cfg.learning_rate, cfg.time_limit, cfg.augment, cfg.optimizer) == (7, 0.0005, 12.5, False, "sgd")
    form.set("time_limit", None)
    assert form.value().time_limit is None
    # tooltips come from the numpydoc Attributes section, as plain text (no reST literals)
    assert "``time_limit``" in field_docs(TrainConfig)["iterations"]
    assert form.editors["iterations"].toolTip() == (
        "Optimisation steps (an upper bound when time_limit is set)."
    )
