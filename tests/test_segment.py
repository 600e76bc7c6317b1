"""The prediction pipeline (unet_core.pipeline), PostprocessConfig, and choice lists from Literal fields."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from unet_core.config import (
    ModelConfig,
    NormalizationConfig,
    PostprocessConfig,
    TrainConfig,
    check_choices,
    config_from_json,
    config_to_json,
    field_choices,
    field_docs,
)
from unet_core.errors import InputError
from unet_core.models import available_architectures, build_model
from unet_core.pipeline import Segmentation, iter_segment, segment, segment_probabilities
from unet_core.postprocess import foreground_probability, probabilities_to_instances
from unet_core.progress import run_to_end
from unet_core.tiling import predict_tiled

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return build_model(ModelConfig(depth=2, base_channels=4, padding="same")).eval()


def test_segment_is_tiler_then_postprocess(tiny_net, sample):
    image = sample[0][:64, :80]
    post = PostprocessConfig(threshold=0.45, split_touching=False, min_size=3, min_distance=2)
    records = []
    result = run_to_end(iter_segment(tiny_net, image, post, tile_shape=32, device="cpu"), records.append)
    probs = predict_tiled(tiny_net, image, tile_shape=32, device="cpu")
    np.testing.assert_array_equal(result.probabilities, probs)
    np.testing.assert_array_equal(result.foreground, foreground_probability(probs))
    np.testing.assert_array_equal(result.labels, probabilities_to_instances(probs, post))
    assert result.labels.dtype == np.uint32 and result.labels.shape == image.shape
    assert result.postprocess == post and result.labels.max() >= 1
    assert [r.stage for r in records][-1] == "postprocess"
    assert {r.stage for r in records[:-1]} == {"predict"}
    # segment() drains the same generator; the default options are PostprocessConfig()
    again = segment(tiny_net, image, tile_shape=32, device="cpu")
    np.testing.assert_array_equal(again.labels, probabilities_to_instances(probs))


def test_segment_probabilities_reruns_postprocessing_only():
    p = np.zeros((2, 30, 30), np.float32)
    p[0] = 1.0
    p[:, 5:15, 5:15] = [[[0.3]], [[0.7]]]
    p[:, 20:25, 20:25] = [[[0.1]], [[0.9]]]
    first = segment_probabilities(p)
    assert isinstance(first, Segmentation) and first.n_objects == 2
    strict = segment_probabilities(first.probabilities, dataclasses.replace(first.postprocess, threshold=0.8))
    assert strict.n_objects == 1 and strict.labels[22, 22] > 0 and strict.labels[10, 10] == 0
    np.testing.assert_array_equal(strict.foreground, first.foreground)


def test_closing_the_pipeline_stops_before_postprocessing(tiny_net, sample):
    gen = iter_segment(tiny_net, np.stack([sample[0][:48, :48]] * 3), tile_shape=32, device="cpu")
    assert next(gen).stage == "predict"
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_postprocess_config_ranges_and_overrides():
    for bad, word in ((dict(threshold=math.nan), "threshold"), (dict(threshold=1.0), "threshold"),
                      (dict(threshold=-0.1), "threshold"), (dict(min_size=-1), "min_size"),
                      (dict(min_distance=0), "min_distance")):
        with pytest.raises(InputError, match=word):
            PostprocessConfig(**bad)
    assert "[0, 1)" in _message(PostprocessConfig, threshold=math.inf)
    p = np.stack([np.full((9, 9), 0.4, np.float32), np.full((9, 9), 0.6, np.float32)])
    cfg = PostprocessConfig(threshold=0.7, min_size=1)
    assert probabilities_to_instances(p, cfg).max() == 0
    assert probabilities_to_instances(p, cfg, threshold=0.5).max() == 1  # keyword overrides the config
    with pytest.raises(InputError, match="threshold"):
        probabilities_to_instances(p, threshold=math.nan)


def _message(cls, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        cls(**kwargs)
    return str(info.value)


def test_choices_come_from_literal_types_and_registries():
    assert field_choices(TrainConfig, "optimizer") == ("adam", "sgd")
    assert field_choices(TrainConfig, "schedule") == ("cosine", "constant")
    assert field_choices(TrainConfig, "time_clock") == ("wall", "process")
    assert field_choices(ModelConfig, "padding") == ("valid", "same")
    assert field_choices(ModelConfig, "up_mode") == ("transpose", "bilinear")
    assert set(field_choices(ModelConfig, "output_stride")) == {8, 16}
    assert field_choices(NormalizationConfig, "mode") == ("percentile", "minmax", "none")
    assert list(field_choices(ModelConfig, "arch")) == available_architectures()
    assert field_choices(TrainConfig, "device")[0] == "auto"
    assert field_choices(TrainConfig, "iterations") == () and field_choices(PostprocessConfig, "threshold") == ()
    # __post_init__ checks the same lists
    assert "'adam' or 'sgd'" in _message(TrainConfig, optimizer="rmsprop")
    assert "'wall' or 'process'" in _message(TrainConfig, time_clock="gpu")
    assert "'transpose' or 'bilinear'" in _message(ModelConfig, up_mode="nearest")
    assert "'percentile', 'minmax' or 'none'" in _message(NormalizationConfig, mode="zscore")
    check_choices(TrainConfig())  # the defaults are allowed values
    cfg = TrainConfig(optimizer="sgd", schedule="constant", time_clock="process",
                      model=ModelConfig(arch="deeplabv3plus", up_mode="bilinear", output_stride=8))
    assert config_from_json(TrainConfig, config_to_json(cfg)) == cfg


def test_public_names_cover_train_and_segment():
    import unet_core

    for name in ("PostprocessConfig", "segment", "iter_segment", "segment_probabilities", "Segmentation",
                 "TrainConfig", "TrainingPair", "train", "TrainResult", "load_checkpoint", "Progress"):
        assert name in unet_core.__all__ and getattr(unet_core, name) is not None
    import unet_core.pipeline  # the module name must not shadow the function

    assert unet_core.segment is segment and unet_core.PostprocessConfig is PostprocessConfig
    assert set(field_docs(PostprocessConfig)) == {f.name for f in dataclasses.fields(PostprocessConfig)}
