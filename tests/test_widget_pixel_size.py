"""Pixel size through napari (issue 12, trust 1 and 6): the plugin's TIFF reader keeps the pixel
size, unit and axes; the writer and the Export widget write the layer's unit, and no unit when it
is unknown (never a made-up 'um'); the Save dialog lists the plugin's writer by its name."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from gui_support import PLUGIN, cpu_only, open_widget, project_home, registry, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


def _imagej_tiff(path, data=None, size=0.25, unit="micron"):
    """An ImageJ TIFF with ``size`` µm pixels, as Fiji writes it."""
    data = np.zeros((40, 50), np.uint16) if data is None else data
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / size, 1 / size), metadata={"unit": unit})
    return path


def _open(viewer, path):
    return viewer.open(str(path), plugin=PLUGIN)


def test_reader_declines_other_files(tmp_path):
    from napari_unet._reader import get_reader

    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader(str(tmp_path / "a.tif.zip")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None  # no stacking
    assert callable(get_reader(str(tmp_path / "A.TIF"))) and callable(get_reader([str(tmp_path / "a.tiff")]))


def test_read_imagej_pixel_size(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    (layer,) = _open(viewer, _imagej_tiff(tmp_path / "cells.tif"))
    np.testing.assert_allclose(layer.scale, (0.25, 0.25))
    assert layer.metadata["unit"] == "um" and layer.metadata["axes"] == "YX"
    assert layer.metadata["source"] == str(tmp_path / "cells.tif")
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]


def test_read_without_resolution_is_unknown(make_napari_viewer, tmp_path):
    from napari_unet._pixel_size import layer_pixel_size

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((30, 40), np.uint8))
    viewer = make_napari_viewer()
    (layer,) = _open(viewer, tmp_path / "plain.tif")
    np.testing.assert_allclose(layer.scale, (1.0, 1.0))
    assert layer.metadata["unit"] is None
    assert layer_pixel_size(layer) == ((1.0, 1.0), None)


def test_read_channels_rgb_and_integer_images(make_napari_viewer, tmp_path):
    import napari.layers

    from unet_core.io import write_tiff

    viewer = make_napari_viewer()
    stack = np.arange(3 * 2 * 20 * 30, dtype=np.uint16).reshape(3, 2, 20, 30)
    tifffile.imwrite(tmp_path / "zc.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZCYX", "unit": "um", "spacing": 1.5})
    channels = _open(viewer, tmp_path / "zc.tif")
    assert [layer.name for layer in channels] == ["zc ch0", "zc ch1"]
    for i, layer in enumerate(channels):
        np.testing.assert_array_equal(layer.data, stack[:, i])
        np.testing.assert_allclose(layer.scale, (1.5, 0.5, 0.5))
        assert layer.metadata["axes"] == "ZYX" and layer.metadata["unit"] == "um"
    rgb = np.zeros((20, 30, 3), np.uint8)
    tifffile.imwrite(tmp_path / "photo.tif", rgb, photometric="rgb")
    (photo,) = _open(viewer, tmp_path / "photo.tif")
    assert photo.rgb and photo.data.shape == (20, 30, 3) and photo.metadata["axes"] == "YXS"
    # integer images stay images, whatever their name says; a last axis of 3 is not RGB here
    write_tiff(tmp_path / "cells labels.tif", np.zeros((4, 20, 3), np.uint32), axes="ZYX")
    (labels_like,) = _open(viewer, tmp_path / "cells labels.tif")
    assert isinstance(labels_like, napari.layers.Image) and not labels_like.rgb
    assert labels_like.data.shape == (4, 20, 3)


def test_save_labels_with_unknown_unit_writes_none(make_napari_viewer, tmp_path):
    import napari

    from unet_core.io import read_tiff

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.eye(20, dtype=np.int32) * 7, name="objects")
    out = tmp_path / "objects.tif"
    assert napari.save_layers(str(out), [layer], plugin=PLUGIN) == [str(out)]
    _, meta = read_tiff(out)
    assert meta.unit is None and meta.pixel_size == pytest.approx((1.0, 1.0))
    with tifffile.TiffFile(out) as tif:
        assert "unit" not in (tif.imagej_metadata or {})
        assert int(tif.pages[0].tags["ResolutionUnit"].value) == 1  # NONE


@pytest.mark.parametrize("dtype", [np.uint16, np.int64])  # ImageJ file / large-id (uint32) file
def test_save_labels_with_unit_roundtrips(make_napari_viewer, tmp_path, dtype):
    import napari

    from napari_unet._pixel_size import layer_pixel_size, set_layer_pixel_size

    viewer = make_napari_viewer()
    data = np.zeros((20, 30), dtype)
    data[2:6, 3:9] = 70000 if dtype == np.int64 else 5
    layer = viewer.add_labels(data, name="objects")
    set_layer_pixel_size(layer, (0.25, 0.25), "micron")
    assert layer_pixel_size(layer) == ((0.25, 0.25), "um")
    out = tmp_path / "objects.tif"
    napari.save_layers(str(out), [layer], plugin=PLUGIN)
    (back,) = _open(viewer, out)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.scale, (0.25, 0.25))
    assert back.metadata["unit"] == "um"


def test_units_set_in_napari_are_written(make_napari_viewer, tmp_path):
    """A unit given through napari's own ``Layer.units`` (no metadata) is written too."""
    import napari

    from unet_core.io import read_tiff

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.ones((10, 10), np.uint8), scale=(0.1, 0.1), units="nm")
    napari.save_layers(str(tmp_path / "a.tif"), [layer], plugin=PLUGIN)
    _, meta = read_tiff(tmp_path / "a.tif")
    assert meta.unit == "nm" and meta.pixel_size == pytest.approx((0.1, 0.1))


def test_set_pixel_size_unknown_and_partial(make_napari_viewer):
    from napari_unet._pixel_size import layer_pixel_size, set_layer_pixel_size

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((3, 10, 10), np.float32), scale=(2.0, 1.0, 1.0), units="um")
    set_layer_pixel_size(layer, (0.5, 0.5), None)  # Y, X only; unit explicitly unknown
    assert layer_pixel_size(layer) == ((2.0, 0.5, 0.5), None)
    assert [str(u) for u in layer.units] == ["pixel"] * 3
    with pytest.raises(ValueError, match="positive"):
        set_layer_pixel_size(layer, (0.0, 1.0), "um")


def test_export_after_reading_keeps_pixel_size(make_napari_viewer, qtbot, cpu_only, project_home, registry, tmp_path):  # noqa: F811
    """The old failure: napari's reader dropped 0.25 µm, and Export wrote 1 µm per pixel."""
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig
    from unet_core.io import read_tiff
    from unet_core.models import build_model
    from unet_core.sample_data import synthetic_nuclei

    image, _ = synthetic_nuclei((64, 64), seed=3)
    _imagej_tiff(tmp_path / "nuclei.tif", image)
    tifffile.imwrite(tmp_path / "raw.tif", image)  # no resolution at all
    model = save_checkpoint(tmp_path / "tiny.pt", build_model(ModelConfig(depth=2, base_channels=4, padding="same")))
    viewer = make_napari_viewer()
    predict = open_widget(viewer, "Predict")
    predict.set_checkpoint(model)
    predict.post_form.set("threshold", 0.0)
    for name in ("nuclei", "raw"):
        _open(viewer, tmp_path / f"{name}.tif")
        predict.image_combo.set_layer(viewer.layers[name])
        assert predict.predict()
        assert wait_job(qtbot, predict.runner).ok
    export = open_widget(viewer, "Export")
    export.folder_edit.setText(str(tmp_path / "out"))
    written = export.export()
    assert sorted(p.name for p in written) == ["nuclei prediction.tif", "raw prediction.tif"]
    _, meta = read_tiff(tmp_path / "out" / "nuclei prediction.tif")
    assert meta.unit == "um" and meta.pixel_size == pytest.approx((0.25, 0.25))
    _, meta = read_tiff(tmp_path / "out" / "raw prediction.tif")
    assert meta.unit is None  # unknown stays unknown: no 'um' made up


def test_save_dialog_lists_the_plugin_writer_by_name(make_napari_viewer, tmp_path):
    """File > Save Selected Layers: the entry docs/user-guide.md names writes through the plugin."""
    from napari._qt.qt_viewer import _npe2_decode_selected_filter
    from napari.plugins import _npe2

    from unet_core.io import read_tiff

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.ones((10, 10), np.int64) * 3, scale=(0.5, 0.5), metadata={"unit": "um"})
    ext_str, writers = _npe2.file_extensions_string_for_layers([layer])
    entry = "napari-unet labels TIFF with pixel size and unit (*.tif *.tiff)"
    assert entry in ext_str.split(";;")
    writer = _npe2_decode_selected_filter(ext_str, entry, writers)
    assert writer.command == "napari-unet.write_labels"
    viewer.layers.selection = {layer}
    viewer.layers.save(str(tmp_path / "typed-without-suffix"), selected=True, _writer=writer)
    data, meta = read_tiff(tmp_path / "typed-without-suffix.tif")
    assert data.dtype == np.uint8 and meta.unit == "um"
