"""The GUI loop on a stack with a 3D model: a 3D model trained by the engine on a sparsely painted
stack, predicted in the Predict widget into a 3D Labels layer with the image's scale."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import cpu_only, open_widget, project_home, registry, wait_job  # noqa: F401

pytestmark = pytest.mark.gui


def test_predict_widget_runs_a_3d_model_on_a_stack(make_napari_viewer, qtbot, cpu_only, project_home, registry, tmp_path):  # noqa: F811
    from napari_unet._sample_data import sample_nuclei_3d
    from unet_core.checkpoint import save_checkpoint
    from unet_core.config import ModelConfig, TrainConfig, anisotropic_pool_z
    from unet_core.progress import run_to_end
    from unet_core.training.data import TrainingPair
    from unet_core.training.trainer import train

    viewer = make_napari_viewer()
    for data, kwargs, kind in sample_nuclei_3d():
        getattr(viewer, f"add_{kind}")(data[:12, :48, :48], **kwargs)
    image = viewer.layers["nuclei 3D"]
    voxel = tuple(image.scale)
    painted = viewer.layers["nuclei 3D ground truth"].data.copy()
    painted[1::2] = 0  # a few painted slices: a sparse 3D annotation
    model = ModelConfig(depth=2, base_channels=4, batch_norm=True, spatial_dims=3, pool_z=anisotropic_pool_z(voxel, 2))
    cfg = TrainConfig(model=model, iterations=2, tile_size=16, device="cpu", voxel_size=voxel, val_fraction=0.0, warmup=0)
    result = run_to_end(train([TrainingPair(image.data, painted)], cfg))
    checkpoint = save_checkpoint(tmp_path / "m3d.pt", result.model)

    widget = open_widget(viewer, "Predict")
    widget.set_checkpoint(checkpoint)
    widget.post_form.set("threshold", 0.0)  # an untrained net: call everything foreground
    assert widget.predict()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok, outcome.error
    assert outcome.value.voxel_size == voxel and outcome.value.index is None
    pred = viewer.layers["nuclei 3D prediction"]
    assert pred.data.shape == image.data.shape and pred.data.max() >= 1
    np.testing.assert_allclose(pred.scale, image.scale)
    # 3D instances: an object spans several slices
    ids = pred.data[pred.data > 0]
    top = int(np.bincount(ids).argmax())
    assert len(np.unique(np.nonzero(pred.data == top)[0])) > 1
    # re-applying post-processing keeps 3D instances
    widget.post_form.set("threshold", 0.01)
    assert widget.reapply_postprocess()
    outcome = wait_job(qtbot, widget.runner)
    assert outcome.ok, outcome.error
    assert outcome.value.segmentation.labels.shape == image.data.shape and outcome.value.voxel_size == voxel
