"""The training engine on tiny problems: learning, sparse regions, determinism, errors, options."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic import disks

from unet_core.config import ModelConfig, TrainConfig, resolve_train_config
from unet_core.errors import InputError
from unet_core.progress import run_to_end
from unet_core.training.data import (
    TrainingPair,
    annotated_region,
    prepare_pairs,
    sample_tile,
    split_validation,
)
from unet_core.training.losses import weighted_cross_entropy
from unet_core.training.trainer import learning_rate, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = TrainConfig(
    model=ModelConfig(depth=1, base_channels=4, batch_norm=True),
    iterations=4, tile_size=24, batch_size=2, val_fraction=0.0, device="cpu", warmup=0,
)


def run(gen):
    """Drain a training generator: (result, progress records)."""
    records = []
    return run_to_end(gen, records.append), records


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_decreases_on_a_tiny_problem():
    image, labels = disks((96, 96), n=10)
    cfg = replace(TINY, iterations=60, learning_rate=3e-3, augment=False, batch_size=4, model=replace(TINY.model, base_channels=8))
    result, records = run(train([TrainingPair(image, labels)], cfg))
    losses = [r.metrics["loss"] for r in records if r.stage == "train"]
    assert len(losses) == 60 and result.steps == 60 and result.stop_reason == "completed"
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])


def test_labels_outside_the_region_change_neither_loss_nor_gradients():
    image, labels = disks((64, 64), n=8)
    mask = np.zeros(labels.shape, bool)
    mask[8:40, 8:48] = True
    other = labels.copy()
    other[~mask] = np.where(labels[~mask] > 0, 0, 77)  # repaint everything outside the region
    a = prepare_pairs([TrainingPair(image, labels, mask)], TINY.model, TINY.weights, region_margin=0)[0]
    b = prepare_pairs([TrainingPair(image, other, mask)], TINY.model, TINY.weights, region_margin=0)[0]
    np.testing.assert_array_equal(a.weight, b.weight)
    assert np.all(a.weight[~mask] == 0)
    np.testing.assert_array_equal(a.target[mask], b.target[mask])
    # gradients of the loss w.r.t. the logits vanish wherever the weight is 0
    logits = torch.randn(1, 2, 64, 64, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.from_numpy(b.target)[None], torch.from_numpy(b.weight)[None])
    loss.backward()
    assert torch.all(logits.grad[0][:, torch.from_numpy(~mask)] == 0)
    # and whole runs give identical models
    ra, _ = run(train([TrainingPair(image, labels, mask)], replace(TINY, region_margin=0)))
    rb, _ = run(train([TrainingPair(image, other, mask)], replace(TINY, region_margin=0)))
    for k, v in params(ra.model).items():
        assert torch.equal(v, params(rb.model)[k]), k


def test_same_seed_same_result_on_cpu():
    image, labels = disks()
    cfg = replace(TINY, val_fraction=0.0)
    r1, rec1 = run(train([TrainingPair(image, labels)], cfg))
    r2, rec2 = run(train([TrainingPair(image, labels)], cfg))
    r3, _ = run(train([TrainingPair(image, labels)], replace(cfg, seed=1)))
    assert [r.metrics.get("loss") for r in rec1] == [r.metrics.get("loss") for r in rec2]
    p1, p2, p3 = params(r1.model), params(r2.model), params(r3.model)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert not all(torch.equal(p1[k], p3[k]) for k in p1)


def test_empty_annotations_and_shape_mismatch_are_clear_errors():
    image, labels = disks()
    with pytest.raises(InputError, match="no annotations"):
        run(train([TrainingPair(image, np.zeros_like(labels))], TINY))
    with pytest.raises(InputError, match="differ"):
        run(train([TrainingPair(image, labels[:40])], TINY))
    with pytest.raises(InputError, match="channel"):
        run(train([TrainingPair(np.stack([image, image]), labels, channel_axis=0)], TINY))
    with pytest.raises(InputError, match="no training images"):
        run(train([], TINY))
    with pytest.raises(InputError, match="mask shape"):
        run(train([TrainingPair(image, labels, np.ones((3, 3), bool))], TINY))


def test_annotated_region_is_the_grown_bounding_box():
    lab = np.zeros((50, 60), np.uint16)
    lab[20:25, 30:32] = 3
    r = annotated_region(lab, 5)
    ys, xs = np.nonzero(r)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 29, 25, 36)
    assert not annotated_region(np.zeros((4, 4), int), 5).any()


def test_stacks_and_multichannel_images():
    image, labels = disks()
    stack = np.stack([image, image[::-1], image])
    lab = np.stack([labels, labels[::-1], np.zeros_like(labels)])  # the last slice is unannotated
    slices = prepare_pairs([TrainingPair(stack, lab, name="s")], TINY.model, TINY.weights, region_margin=4)
    assert [s.name for s in slices] == ["s[0]", "s[1]"]
    two = np.stack([image, 1 - image], axis=-1)  # (Y, X, C)
    cfg = replace(TINY, model=replace(TINY.model, in_channels=2))
    result, _ = run(train([TrainingPair(two, labels, channel_axis=-1)], cfg))
    assert result.model.config.in_channels == 2


def test_tiles_mirror_at_borders_and_zero_weight_outside():
    image, labels = disks((40, 40))
    sl = prepare_pairs([TrainingPair(image, labels, np.ones((40, 40), bool))], TINY.model, TINY.weights, region_margin=0)[0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, tgt, wt = sample_tile(rng, sl, 60, 40, 10)
        assert img.shape == (1, 60, 60) and tgt.shape == (40, 40) and wt.shape == (40, 40)
        assert np.isfinite(img).all() and (wt > 0).any()


def test_validation_split_by_slices_or_spatially():
    image, labels = disks((96, 96), n=10)
    one = prepare_pairs([TrainingPair(image, labels, np.ones((96, 96), bool))], TINY.model, TINY.weights, region_margin=0)
    tr, va = split_validation(one, 0.25, seed=0)
    assert len(tr) == len(va) == 1
    assert not (tr[0].weight > 0)[va[0].region].any()  # held-out pixels never teach
    assert va[0].region.sum() == 24 * 96
    many = one * 5
    tr, va = split_validation(many, 0.2, seed=0)
    assert len(tr) == 4 and len(va) == 1
    tr, va = split_validation(one * 2, 0.2, seed=0)  # too few slices to spare one: strips
    assert len(tr) == len(va) == 2 and all(v.name.endswith("(validation part)") for v in va)
    assert split_validation(one, 0.0, seed=0) == (one, [])


def test_validation_metrics_and_best_checkpoint(tmp_path):
    image, labels = disks((96, 96), n=10)
    cfg = replace(TINY, iterations=6, val_fraction=0.3, val_every=3)
    result, records = run(train([TrainingPair(image, labels)], cfg, output=tmp_path / "m.pt"))
    vals = [r for r in records if r.stage == "validate"]
    assert [r.step for r in vals] == [3, 6]
    for key in ("val_loss", "val_foreground_iou", "val_dice", "val_ap50"):
        assert 0 <= vals[-1].metrics[key] < 10
    assert result.best_checkpoint == tmp_path / "m.best.pt" and result.best_checkpoint.exists()
    assert records[-1].stage == "save" and records[-1].metrics["checkpoint"] == str(tmp_path / "m.pt")


def test_semantic_mode_infers_classes():
    image, labels = disks((64, 64), n=6)
    classes = np.where(labels > 0, 1 + labels % 2, 0).astype(np.uint8)  # classes 1 and 2
    cfg = replace(TINY, semantic=True, val_fraction=0.3, val_every=4)
    result, records = run(train([TrainingPair(image, classes)], cfg))
    assert result.model.config.n_classes == 3
    assert len(result.model.config.class_names) == 3
    assert "val_miou" in records[-2].metrics and "val_ap50" not in records[-2].metrics
    # a fine-tuned model cannot take class ids it does not have
    with pytest.raises(InputError, match="class id"):
        prepare_pairs([TrainingPair(image, classes)], TINY.model, TINY.weights, region_margin=4, semantic=True)


def test_time_limit_stops_cleanly(tmp_path):
    image, labels = disks()
    cfg = replace(TINY, iterations=10_000, time_limit=0.5, time_clock="process")
    result, records = run(train([TrainingPair(image, labels)], cfg, output=tmp_path / "m.pt"))
    assert result.stopped and result.stop_reason == "time_limit" and 0 < result.steps < 10_000
    assert result.checkpoint.exists()
    assert all(r.total < 10_000 for r in records if r.stage == "train")  # the bar shows the budget


def test_stop_between_steps_saves_a_resumable_checkpoint(tmp_path):
    from unet_core.checkpoint import load_checkpoint

    image, labels = disks()
    gen = train([TrainingPair(image, labels)], replace(TINY, iterations=50), output=tmp_path / "m.pt")
    for _ in range(3):
        next(gen)
    gen.close()
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck.meta["iterations"] == 3 and ck.train_state["step"] == 3


def test_freeze_encoder_keeps_the_contracting_path(tmp_path):
    image, labels = disks()
    first, _ = run(train([TrainingPair(image, labels)], TINY, output=tmp_path / "a.pt"))
    cfg = replace(TINY, freeze_encoder=True, seed=4)
    tuned, _ = run(train([TrainingPair(image, labels)], cfg, init_from=tmp_path / "a.pt"))
    before, after = params(first.model), params(tuned.model)
    enc = [k for k in before if k.startswith("encoders.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)  # incl. batch-norm statistics
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoders."))


def test_out_of_memory_shrinks_batch_then_tile(monkeypatch):
    from unet_core.models.unet import UNet

    real = UNet.forward
    seen = []

    def forward(self, x):
        seen.append(tuple(x.shape))
        if x.shape[0] > 1 or x.shape[-1] > 50:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(self, x)

    monkeypatch.setattr(UNet, "forward", forward)
    image, labels = disks((96, 96))
    cfg = replace(TINY, batch_size=4, tile_size=40, augment=False)
    result, records = run(train([TrainingPair(image, labels)], cfg))
    warnings = [r for r in records if r.stage == "warning"]
    assert result.steps == cfg.iterations
    assert [w.metrics["batch_size"] for w in warnings] == [2, 1, 1]
    assert warnings[-1].metrics["tile_size"] < 40
    assert "out of memory" in warnings[0].message

    def always(self, x):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(UNet, "forward", always)
    with pytest.raises(InputError, match="out of memory"):
        run(train([TrainingPair(image, labels)], cfg))
    # other runtime errors are not swallowed
    monkeypatch.setattr(UNet, "forward", lambda self, x: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        run(train([TrainingPair(image, labels)], cfg))


def test_device_defaults_and_schedule():
    cpu = resolve_train_config(TrainConfig(), "cpu")
    gpu = resolve_train_config(TrainConfig(), "cuda")
    assert (cpu.tile_size, cpu.batch_size, cpu.amp) == (96, 4, False)
    assert gpu.tile_size > cpu.tile_size and gpu.batch_size > cpu.batch_size and gpu.amp
    assert resolve_train_config(TrainConfig(tile_size=64, amp=True), "cpu").tile_size == 64
    assert resolve_train_config(TrainConfig(amp=True), "cpu").amp is False
    cfg = TrainConfig(iterations=100, warmup=10, learning_rate=1.0)
    lrs = [learning_rate(cfg, s, 0.0) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] and max(lrs) <= 1.0 and lrs[-1] < 0.01
    timed = replace(cfg, iterations=10**9, time_limit=10.0)
    assert learning_rate(timed, 50, 5.0) == pytest.approx(0.5, abs=1e-6)
    assert learning_rate(timed, 50, 10.0) == pytest.approx(0.0, abs=1e-9)


def test_device_resident_sampling_cuts_the_same_windows():
    from unet_core.training.data import TileSampler

    image, labels = disks((40, 50))
    sl = prepare_pairs([TrainingPair(image, labels, np.ones((40, 50), bool))], TINY.model, TINY.weights, region_margin=0)
    host = TileSampler(sl * 2, 30, 20, 5, 64)
    resident = TileSampler(sl * 2, 30, 20, 5, 64, device="cpu")  # the accelerator path, on the CPU
    a = host.sample(np.random.default_rng(3), 6)
    b = resident.sample_tensors(np.random.default_rng(3), 6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y.numpy())


def _volume_slice(shape=(12, 30, 40), point=(6, 20, 5)):
    """A hand-made 3D sample whose only annotated pixel is ``point``."""
    from unet_core.training.data import PreparedSlice

    rng = np.random.default_rng(0)
    weight = np.zeros(shape, np.float32)
    weight[point] = 1
    target = (rng.random(shape) > 0.5).astype(np.int64)
    image = rng.random((1, *shape)).astype(np.float32)
    return PreparedSlice(image, target, weight, weight > 0, None, "vol")


def test_sampler_cuts_windows_of_any_spatial_dimension():
    from unet_core.training.data import TileSampler

    sl = _volume_slice()
    in_size, out_size, border, source = (8, 12, 12), (4, 8, 6), (2, 2, 3), (10, 16, 14)
    host = TileSampler([sl], in_size, out_size, border, source)
    x, y, w = host.sample(np.random.default_rng(1), 5)
    assert x.shape == (5, 1, 10, 16, 14) and y.shape == w.shape == (5, 10, 16, 14)
    # the annotated pixel lies in every tile's output window (the central out_size window)
    inner = (slice(None), *(slice((s - o) // 2, (s - o) // 2 + o) for s, o in zip(source, out_size)))
    np.testing.assert_array_equal(w[inner].sum(axis=(1, 2, 3)), 1)
    resident = TileSampler([sl], in_size, out_size, border, source, device="cpu")
    for a, b in zip(host.sample(np.random.default_rng(2), 4), resident.sample_tensors(np.random.default_rng(2), 4)):
        np.testing.assert_array_equal(a, b.numpy())
    img, tgt, wt = sample_tile(np.random.default_rng(3), sl, in_size, out_size, border)
    assert img.shape == (1, 8, 12, 12) and tgt.shape == wt.shape == (4, 8, 6) and tgt.dtype == np.int64
    with pytest.raises(ValueError, match="3 sizes"):
        TileSampler([sl], (8, 12), out_size, border, source)


def test_square_int_sizes_equal_per_axis_tuples():
    from unet_core.training.data import TileSampler

    image, labels = disks((40, 50))
    sl = prepare_pairs([TrainingPair(image, labels)], TINY.model, TINY.weights, region_margin=3)
    a = TileSampler(sl, 30, 20, 5, 64).sample(np.random.default_rng(5), 4)
    b = TileSampler(sl, (30, 30), (20, 20), (5, 5), (64, 64)).sample(np.random.default_rng(5), 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_spatial_validation_split_takes_the_longest_axis_of_a_volume():
    sl = _volume_slice(shape=(8, 20, 70), point=(1, 1, 1))
    sl = type(sl)(sl.image, sl.target, np.ones(sl.weight.shape, np.float32), np.ones(sl.weight.shape, bool), None, "v")
    tr, va = split_validation([sl], 0.25, seed=0)
    assert va[0].region.sum() == 8 * 20 * 18 and va[0].region[:, :, 52:].all()
    assert not (tr[0].weight > 0)[va[0].region].any()


def test_training_targets_are_the_prepared_slices():
    from unet_core.training.targets import training_targets

    image, labels = disks((64, 64), n=8)
    mask = np.zeros(labels.shape, bool)
    mask[5:50, 10:60] = True
    for m in (None, mask):
        sl = prepare_pairs([TrainingPair(image, labels, m)], TINY.model, TINY.weights, region_margin=4)[0]
        t = training_targets(labels.astype(np.uint32), TINY.weights, mask=m, region_margin=4)
        for name in ("target", "weight", "region", "instances"):
            np.testing.assert_array_equal(getattr(t, name), getattr(sl, name))
    classes = np.where(labels > 0, 1 + labels % 2, 0)
    sl = prepare_pairs([TrainingPair(image, classes)], replace(TINY.model, n_classes=3), TINY.weights,
                       region_margin=4, semantic=True)[0]
    t = training_targets(classes, TINY.weights, region_margin=4, semantic=True)
    np.testing.assert_array_equal(t.weight, sl.weight)
    assert np.all(t.weight[~t.region] == 0) and t.instances is None
    assert training_targets(np.zeros((9, 9), np.uint32), TINY.weights, region_margin=4) is None


def test_semantic_ids_beyond_the_class_limit_are_refused_and_large_ids_do_not_wrap():
    from unet_core.training.data import MAX_CLASSES, TileSampler, infer_n_classes

    image, labels = disks((64, 64), n=4)
    classes = np.where(labels > 0, 60000, 0).astype(np.uint16)
    with pytest.raises(InputError, match="renumber"):
        infer_n_classes([TrainingPair(image, classes)])
    assert infer_n_classes([TrainingPair(image, np.minimum(classes, MAX_CLASSES - 1))]) == MAX_CLASSES
    sl = _volume_slice(shape=(20, 20), point=(10, 10))
    sl = type(sl)(sl.image[:, 0], np.full((20, 20), 40000, np.int64), sl.weight, sl.region, None, "big")
    _, tgt, _ = TileSampler([sl], 8, 8, 0, 8).sample(np.random.default_rng(0), 2)
    assert tgt.max() == 40000
