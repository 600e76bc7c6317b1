"""TIFF I/O: dtype, axes and pixel size survive; writes are atomic and never overwrite silently."""

import numpy as np
import pytest

from unet_core.errors import InputError
from unet_core.io import labels_dtype, normalize_unit, read_tiff, write_tiff


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


# ----------------------------------------------------------------------------- pixel size and unit
def _imagej(path, unit, res=(4.0, 4.0)):
    import tifffile

    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), imagej=True, resolution=res, metadata={"unit": unit})


def _tags(path, res, resunit):
    import tifffile

    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), resolution=res, resolutionunit=resunit)


def _ome(path):
    import tifffile

    md = {"axes": "CYX", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm",
          "PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "µm"}
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), ome=True, metadata=md)


def _legacy(path):
    """What napari-unet wrote for uint32 labels before: tifffile's default INCH, unit in JSON."""
    import tifffile

    tifffile.imwrite(path, np.zeros((8, 8), np.uint32), resolution=(4.0, 4.0), metadata={"axes": "YX", "unit": "um"})


@pytest.mark.parametrize(
    ("make", "sizes", "unit"),
    [
        (lambda p: _imagej(p, "micron"), (0.25, 0.25), "um"),
        (lambda p: _imagej(p, "\\u00B5m"), (0.25, 0.25), "um"),  # how ImageJ escapes µm
        (lambda p: _imagej(p, "nm", (0.5, 0.5)), (2.0, 2.0), "nm"),
        (lambda p: _imagej(p, "pixel", (1.0, 1.0)), (1.0, 1.0), None),  # ImageJ: uncalibrated
        (lambda p: _tags(p, (40000.0, 40000.0), "CENTIMETER"), (0.25, 0.25), "um"),
        (lambda p: _tags(p, (72.0, 72.0), "INCH"), (25400 / 72, 25400 / 72), "um"),
        (lambda p: _tags(p, (4.0, 4.0), "NONE"), (0.25, 0.25), None),  # relative only
        (lambda p: _tags(p, None, None), (1.0, 1.0), None),  # no resolution written
        (lambda p: _ome(p), (1.0, 250.0, 250.0), "nm"),
        (_legacy, (0.25, 0.25), "um"),
    ],
    ids=["imagej-micron", "imagej-escaped-mu", "imagej-nm", "imagej-pixel", "tags-cm", "tags-inch",
         "tags-none", "no-resolution", "ome-nm-and-um", "napari-unet-legacy"],
)
def test_read_unit_from_imagej_ome_and_tags(tmp_path, make, sizes, unit):
    path = tmp_path / "a.tif"
    make(path)
    _, meta = read_tiff(path)
    assert meta.unit == unit
    assert meta.pixel_size == pytest.approx(sizes, rel=1e-6)


def _resolution_unit(path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return int(tif.pages[0].tags["ResolutionUnit"].value)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])  # ImageJ hyperstack / tifffile-shaped
def test_write_without_unit_claims_none(tmp_path, dtype):
    for sizes in ((1.0, 1.0), (0.5, 0.5)):
        p = write_tiff(tmp_path / f"{sizes[0]}.tif", np.zeros((6, 6), dtype), pixel_size=sizes)
        _, meta = read_tiff(p)
        assert meta.unit is None and meta.pixel_size == pytest.approx(sizes)
        assert _resolution_unit(p) == 1  # NONE: neither inch (TIFF's default) nor a length


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
@pytest.mark.parametrize("unit", ["um", "nm", "micron"])
def test_write_unit_roundtrips(tmp_path, dtype, unit):
    p = write_tiff(tmp_path / "a.tif", np.zeros((3, 6, 6), dtype), axes="ZYX", pixel_size=(2.0, 0.25, 0.25), unit=unit)
    _, meta = read_tiff(p)
    assert meta.unit == normalize_unit(unit)
    assert meta.pixel_size == pytest.approx((2.0, 0.25, 0.25), rel=1e-6)


def test_non_imagej_tags_give_fiji_the_physical_size(tmp_path):
    """uint32 labels cannot be ImageJ hyperstacks: Fiji reads their tags, so they say cm, not inch."""
    import tifffile

    p = write_tiff(tmp_path / "l.tif", np.zeros((6, 6), np.uint32), pixel_size=(0.25, 0.25), unit="um")
    with tifffile.TiffFile(p) as tif:
        assert tif.imagej_metadata is None
        assert _resolution_unit(p) == 3  # CENTIMETER
        assert tif.pages[0].resolution == pytest.approx((40000.0, 40000.0))  # pixels per cm


def test_normalize_unit():
    assert [normalize_unit(u) for u in ("µm", "μm", "micron", "micrometer", "\\u00B5m", "um")] == ["um"] * 6
    assert [normalize_unit(u) for u in (None, "", "pixel", "pixels", " px ")] == [None] * 5
    assert normalize_unit("nanometer") == "nm" and normalize_unit("inch") == "inch"
    assert normalize_unit("furlong") == "furlong"  # unknown units are kept as given
