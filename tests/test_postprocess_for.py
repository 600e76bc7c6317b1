"""Post-processing defaults come from the model (issue 12, trust 5): ``meta["postprocess"]``."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from unet_core.config import PostprocessConfig
from unet_core.pipeline import postprocess_for

FITTED = {"threshold": 0.4, "split_touching": False, "min_size": 25, "min_distance": 6}


@pytest.fixture
def fitted_checkpoint(tmp_path):
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    model = build_model(ModelConfig(depth=1, base_channels=2, padding="same"))
    return save_checkpoint(tmp_path / "fitted.pt", model, meta={"postprocess": FITTED})


def test_reads_the_checkpoint_meta(fitted_checkpoint):
    from unet_core.checkpoint import load_checkpoint

    expected = PostprocessConfig(**FITTED)
    assert postprocess_for(fitted_checkpoint) == expected  # a path
    assert postprocess_for(load_checkpoint(fitted_checkpoint)) == expected  # a Checkpoint
    assert postprocess_for({"postprocess": FITTED}) == expected  # the meta mapping
    assert postprocess_for(SimpleNamespace(meta={"postprocess": {"min_size": 3}})) == PostprocessConfig(min_size=3)


def test_falls_back_to_the_defaults(caplog):
    assert postprocess_for(None) == PostprocessConfig()
    assert postprocess_for(SimpleNamespace()) == PostprocessConfig()  # a model without meta
    assert postprocess_for({"created": "today"}) == PostprocessConfig()
    with caplog.at_level(logging.WARNING, logger="unet_core.pipeline"):
        assert postprocess_for({"postprocess": {"threshold": 2.0}}) == PostprocessConfig()
        assert postprocess_for({"postprocess": {"min_size": 4, "from_the_future": 1}}) == PostprocessConfig(min_size=4)
        assert postprocess_for({"postprocess": "oops"}) == PostprocessConfig()
    assert len(caplog.records) == 3


def test_cli_uses_the_model_unless_flags_are_given(fitted_checkpoint, tmp_path, sample, monkeypatch):
    from unet_core import pipeline
    from unet_core.cli import main
    from unet_core.io import write_tiff

    write_tiff(tmp_path / "img.tif", sample[0])
    seen = []
    real = pipeline.iter_segment
    monkeypatch.setattr(pipeline, "iter_segment", lambda m, i, pp, **kw: seen.append(pp) or real(m, i, pp, **kw))
    args = ["predict", str(fitted_checkpoint), str(tmp_path / "img.tif"), "-o", str(tmp_path / "p.tif"), "--device", "cpu"]
    assert main(args) == 0
    assert seen[-1] == PostprocessConfig(**FITTED)
    assert main([*args, "--overwrite", "--split-touching", "--min-size", "10"]) == 0
    assert seen[-1] == PostprocessConfig(**{**FITTED, "split_touching": True, "min_size": 10})
