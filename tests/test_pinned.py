"""Numbers pinned before the seams refactor (issue 10): prediction from fixed weights and training
from a fixed seed must give the same results as the code they were measured on (commit 2eb763d).

The constants were computed with that commit on this project's CPU machine (torch 2.13, one
thread). A change that moves them changes behaviour: say so and re-pin only on purpose.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from unet_core.config import ModelConfig, TrainConfig
from unet_core.models import build_model
from unet_core.postprocess import probabilities_to_instances
from unet_core.progress import run_to_end
from unet_core.sample_data import synthetic_nuclei
from unet_core.tiling import predict_tiled
from unet_core.training.data import TrainingPair
from unet_core.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RTOL = 1e-5

PREDICT = {
    "valid": {"sum": 7636.890571266878, "probe": [0.1935078650712967, 0.4753803610801697, 0.5595755577087402],
              "objects": 50, "stack_sum": 3992.731052979827},
    "same": {"sum": 9556.377780109644, "probe": [0.5008779764175415, 0.5006048679351807, 0.4989013075828552],
             "objects": 176, "stack_sum": 5120.7650790810585},
}
TRAIN_LOSSES = [1.1158534288406372, 1.1327276229858398, 0.6417284607887268, 1.4117870330810547,
                1.1148185729980469, 1.1204400062561035]
TRAIN_PARAM_SUM = 2965.4688957329718
TRAIN_VAL_LOSSES = [1.163392424583435, 1.0947866439819336, 1.077889084815979, 1.2215609550476074,
                    0.981160581111908, 1.0849153995513916]
TRAIN_VAL = {"val_loss": 0.7961995601654053, "val_foreground_iou": 0.040834642135965896,
             "val_dice": 0.0784651864625997, "val_pixel_error": 0.8769230769230769,
             "val_boundary_f1": 0.2683970285509711, "val_ap50": 0.0}


@pytest.fixture(scope="module")
def sample():
    return synthetic_nuclei()


@pytest.mark.parametrize(("name", "cfg", "tile"), [
    ("valid", ModelConfig(depth=2, base_channels=8, batch_norm=True), 40),
    ("same", ModelConfig(depth=2, base_channels=8, padding="same"), 48),
])
def test_prediction_from_fixed_weights_is_pinned(sample, name, cfg, tile):
    image, _ = sample
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    crop = image[100:230, 50:197]
    p = predict_tiled(model, crop, tile_shape=tile, device="cpu")
    labels = probabilities_to_instances(p, threshold=float(np.median(1 - p[0])))
    stack = predict_tiled(model, np.stack([crop[:64, :80], crop[20:84, 30:110]]), tile_shape=tile, device="cpu")
    want = PREDICT[name]
    np.testing.assert_allclose(p[1].astype(np.float64).sum(), want["sum"], rtol=RTOL)
    np.testing.assert_allclose([p[1, 5, 7], p[1, 77, 101], p[0, 129, 146]], want["probe"], rtol=RTOL)
    np.testing.assert_allclose(stack[:, 1].astype(np.float64).sum(), want["stack_sum"], rtol=RTOL)
    assert int(labels.max()) == want["objects"]


def _pairs(image, truth):
    return [TrainingPair(image[:160, :160], truth[:160, :160], name="a"),
            TrainingPair(image[200:330, 150:300], truth[200:330, 150:300], name="b")]


CFG = TrainConfig(model=ModelConfig(depth=2, base_channels=8, batch_norm=True), iterations=6, tile_size=32,
                  batch_size=2, val_fraction=0.0, val_every=3, device="cpu", warmup=2, seed=3)


def test_training_from_fixed_seed_is_pinned(sample):
    records = []
    result = run_to_end(train(_pairs(*sample), CFG), records.append)
    losses = [r.metrics["loss"] for r in records if r.stage == "train"]
    np.testing.assert_allclose(losses, TRAIN_LOSSES, rtol=RTOL)
    total = sum(v.double().abs().sum() for v in result.model.state_dict().values() if v.dtype.is_floating_point)
    np.testing.assert_allclose(float(total), TRAIN_PARAM_SUM, rtol=RTOL)


def test_training_with_validation_is_pinned(sample):
    records = []
    run_to_end(train(_pairs(*sample), replace(CFG, val_fraction=0.3, augment=False)), records.append)
    losses = [r.metrics["loss"] for r in records if r.stage == "train"]
    np.testing.assert_allclose(losses, TRAIN_VAL_LOSSES, rtol=RTOL)
    val = {k: v for r in records if r.stage == "validate" for k, v in r.metrics.items() if k.startswith("val_")}
    assert val.keys() == TRAIN_VAL.keys()
    np.testing.assert_allclose([val[k] for k in TRAIN_VAL], list(TRAIN_VAL.values()), rtol=RTOL, atol=1e-9)
