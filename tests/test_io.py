"""TIFF I/O: dtype, axes and pixel size survive; writes are atomic and never overwrite silently."""

import numpy as np
import pytest

from unet_core.errors import InputError
from unet_core.io import labels_dtype, read_tiff, write_tiff


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.uint32])
def test_roundtrip_keeps_dtype_axes_and_pixel_size(tmp_path, dtype):
    data = (np.arange(3 * 20 * 30) % 200).astype(dtype).reshape(3, 20, 30)
    p = write_tiff(tmp_path / "a.tif", data, axes="ZYX", pixel_size=(2.0, 0.5, 0.5))
    back, meta = read_tiff(p)
    assert back.dtype == dtype and back.shape == data.shape
    np.testing.assert_array_equal(back, data)
    assert meta.axes == "ZYX"
    assert meta.pixel_size == pytest.approx((2.0, 0.5, 0.5), rel=1e-5)


def test_int64_labels_are_stored_compactly(tmp_path):
    lab = np.zeros((10, 10), np.int64)
    lab[2:4, 2:4] = 70000
    write_tiff(tmp_path / "l.tif", lab)
    back, _ = read_tiff(tmp_path / "l.tif")
    assert back.dtype == np.uint32 and back.max() == 70000


def test_labels_dtype():
    assert labels_dtype(np.array([0, 255])) == np.uint8
    assert labels_dtype(np.array([0, 256])) == np.uint16
    assert labels_dtype(np.array([0, 2**20])) == np.uint32
    with pytest.raises(InputError):
        labels_dtype(np.array([-1, 2]))


def test_no_silent_overwrite_and_no_temp_left(tmp_path):
    p = tmp_path / "x.tif"
    write_tiff(p, np.zeros((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_tiff(p, np.ones((4, 4), np.uint8))
    assert read_tiff(p)[0].max() == 0
    write_tiff(p, np.ones((4, 4), np.uint8), overwrite=True)
    assert read_tiff(p)[0].max() == 1
    assert [f.name for f in tmp_path.iterdir()] == ["x.tif"]


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    import tifffile

    p = tmp_path / "x.tif"
    write_tiff(p, np.full((4, 4), 7, np.uint8))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(OSError):
        write_tiff(p, np.zeros((4, 4), np.uint8), overwrite=True)
    monkeypatch.undo()
    assert read_tiff(p)[0].max() == 7
    assert [f.name for f in tmp_path.iterdir()] == ["x.tif"]


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_tiff(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_tiff(bad)
