"""npe2 sample data: synthetic fluorescent nuclei with their ground-truth instance labels."""

from __future__ import annotations

from typing import Any


def sample_nuclei() -> list[tuple[Any, dict, str]]:
    """Layer data tuples: the uint16 nuclei image and its ground-truth Labels."""
    from unet_core.sample_data import synthetic_nuclei

    image, labels = synthetic_nuclei()
    return [
        (image, {"name": "nuclei", "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "opacity": 0.5, "visible": False}, "labels"),
    ]


def sample_nuclei_3d() -> list[tuple[Any, dict, str]]:
    """Layer data tuples of a synthetic anisotropic 3D nuclei stack (Z, Y, X) and its 3D
    ground-truth Labels, both scaled by the voxel size (micrometres) so that the 3D view shows
    round nuclei."""
    from unet_core.sample_data_3d import synthetic_nuclei_3d

    from ._pixel_size import AXES_KEY, UNIT_KEY, napari_units

    stack = synthetic_nuclei_3d()
    common: dict[str, Any] = {"scale": stack.voxel_size, "metadata": {UNIT_KEY: "um", AXES_KEY: "ZYX"}}
    units = napari_units("um")
    if units is not None:
        common["units"] = (units,) * 3
    return [
        (stack.image, {**common, "name": "nuclei 3D", "colormap": "gray"}, "image"),
        (stack.labels, {**common, "name": "nuclei 3D ground truth", "opacity": 0.5, "visible": False}, "labels"),
    ]
