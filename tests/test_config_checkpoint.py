"""Configs round-trip through JSON; checkpoints round-trip and refuse unsafe pickles."""

import pickle

import numpy as np
import pytest
import torch

from unet_core.checkpoint import load_checkpoint, save_checkpoint
from unet_core.config import ModelConfig, TrainConfig, config_from_json, config_to_json
from unet_core.errors import CheckpointError, InputError
from unet_core.models import build_model


def test_config_json_roundtrip():
    for cfg in (ModelConfig(), TrainConfig(), ModelConfig(n_classes=3, padding="same")):
        assert config_from_json(type(cfg), config_to_json(cfg)) == cfg


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(InputError, match="unknown option"):
        config_from_json(ModelConfig, '{"bogus": 1}')
    with pytest.raises(InputError, match="n_classes"):
        ModelConfig(n_classes=1)
    with pytest.raises(InputError, match="padding"):
        ModelConfig(padding="full")


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = build_model(ModelConfig(depth=2, base_channels=4))
    p = save_checkpoint(tmp_path / "m.pt", net, meta={"iterations": 3})
    ck = load_checkpoint(p)
    assert ck.config == net.config and ck.meta["iterations"] == 3
    x = torch.rand(1, 1, net.valid_input_size(8), net.valid_input_size(8))
    with torch.no_grad():
        np.testing.assert_allclose(net.eval()(x).numpy(), ck.model(x).numpy(), atol=1e-6)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/napari_unet_pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    import os

    p = tmp_path / "evil.pt"
    torch.save({"format": "napari-unet-checkpoint", "x": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(p)
    assert not os.path.exists("/tmp/napari_unet_pwned")
    p2 = tmp_path / "evil.pkl"
    p2.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(p2)
    assert not os.path.exists("/tmp/napari_unet_pwned")


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope.pt")
    p = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="not a napari-unet checkpoint"):
        load_checkpoint(p)
