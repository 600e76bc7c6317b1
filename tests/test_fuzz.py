"""Property tests: random bytes, shapes and dtypes reach the API; only the project's errors escape."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from unet_core.errors import CheckpointError, UNetCoreError

pytestmark = pytest.mark.usefixtures("torch_one_thread")
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tiff_bytes() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16), compression="zlib", photometric="minisblack",
                     metadata={"axes": "ZYX"})
    return buf.getvalue()


GOOD_TIFF = _tiff_bytes()


@FAST
@given(data=st.one_of(
    st.binary(max_size=2000),
    st.lists(st.tuples(st.integers(0, len(GOOD_TIFF) - 1), st.integers(0, 255)), min_size=1, max_size=8)
    .map(lambda edits: _edit(GOOD_TIFF, edits)),
    st.integers(0, len(GOOD_TIFF)).map(lambda n: GOOD_TIFF[:n]),
))
def test_tiff_reader_raises_only_input_errors(data, tmp_path):
    from unet_core.io import read_image

    path = tmp_path / "f.tif"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image, meta, _ = read_image(path)
        except UNetCoreError:
            return
    assert len(meta.axes) == image.ndim


def _edit(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for i, v in edits:
        out[i] = v
    return bytes(out)


@FAST
@given(data=st.one_of(st.binary(max_size=1000), st.binary(max_size=500).map(lambda b: b"PK\x03\x04" + b),
                      st.binary(max_size=500).map(lambda b: b"\x80\x02" + b)))
def test_checkpoint_loader_raises_only_checkpoint_errors(data, tmp_path):
    from unet_core.checkpoint import load_checkpoint

    path = tmp_path / "c.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_])


@settings(max_examples=20, deadline=None)
@given(labels=hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
                         elements={"min_value": 0, "max_value": 5} | {}) | hnp.arrays(
    np.float64, hnp.array_shapes(max_dims=2, max_side=6)),
       sigma=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(5.0)))
def test_weight_map_and_label_validation_raise_only_input_errors(labels, sigma):
    from unet_core.labels import as_instance_labels
    from unet_core.weights import boundary_weight_map

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in (lambda: as_instance_labels(labels), lambda: boundary_weight_map(labels, sigma=sigma)):
            try:
                out = call()
            except UNetCoreError:
                continue
            assert out.shape == labels.shape


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from unet_core.config import ModelConfig
    from unet_core.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(depth=1, base_channels=2, padding="same")).eval()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16]),
                        hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=20)),
       channel_axis=st.one_of(st.none(), st.integers(-4, 4)),
       tile=st.one_of(st.none(), st.integers(-2, 40)))
def test_predict_tiled_raises_only_project_errors(tiny_model, image, channel_axis, tile):
    from unet_core.tiling import predict_tiled

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            probs = predict_tiled(tiny_model, image, channel_axis=channel_axis, tile_shape=tile, device="cpu")
        except UNetCoreError:
            return
    # (Y, X) -> (K, Y, X); a stack (Z, Y, X) -> (Z, K, Y, X); the class axis is third from the end
    assert probs.ndim in (3, 4) and probs.shape[-3] == 2
    assert probs.shape[-2:] == image.shape[-2:] or channel_axis is not None
    assert np.isfinite(probs).all()  # values beyond float32 are refused, never NaN


def test_values_beyond_float32_are_refused_not_nan(tiny_model):
    from unet_core.errors import InputError
    from unet_core.tiling import predict_tiled

    image = np.full((16, 16), 3.0e38, np.float64)
    image[4:8, 4:8] = 3.5e38
    with pytest.raises(InputError, match="float32 range"):
        predict_tiled(tiny_model, image, device="cpu")
