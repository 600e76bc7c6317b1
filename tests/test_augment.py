"""Augmentation: deterministic for a seed, labels stay integer and aligned with image and weights."""

import numpy as np
import pytest
import torch

from unet_core.config import AugmentConfig
from unet_core.training.augment import Augmenter, source_size

pytestmark = pytest.mark.usefixtures("torch_one_thread")

NONE = AugmentConfig(
    elastic_sigma=0.0, flip=False, rot90=False, rotation=False, scale=(1.0, 1.0), gamma=(1.0, 1.0),
    contrast=(1.0, 1.0), brightness=0.0, noise=0.0,
)


def _batch(n=3, s=41, seed=0):
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(0, 3, (n, s, s))).long()
    weight = (target.float() * 10 + 1).contiguous()  # a function of the target: must stay so
    image = torch.from_numpy(rng.random((n, 2, s, s)).astype(np.float32))
    return image, target, weight


def test_source_size_has_room_and_parity():
    cfg = AugmentConfig()
    for n in (20, 21, 92, 188):
        s = source_size(n, cfg)
        assert s >= n * 1.41 and (s - n) % 2 == 0
    assert source_size(33, None) == 33


def test_same_seed_same_result_and_different_seed_differs():
    image, target, weight = _batch()
    a = Augmenter(AugmentConfig(), seed=5)(image, target, weight, in_size=21, border=4)
    b = Augmenter(AugmentConfig(), seed=5)(image, target, weight, in_size=21, border=4)
    c = Augmenter(AugmentConfig(), seed=6)(image, target, weight, in_size=21, border=4)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_identity_config_is_an_exact_crop():
    image, target, weight = _batch(s=41)
    x, t, w = Augmenter(NONE, seed=0)(image, target, weight, in_size=21, border=5)
    assert x.shape == (3, 2, 21, 21) and t.shape == (3, 11, 11) and w.shape == (3, 11, 11)
    torch.testing.assert_close(x, image[:, :, 10:31, 10:31], atol=1e-5, rtol=0)
    assert torch.equal(t, target[:, 15:26, 15:26])
    assert torch.equal(w, weight[:, 15:26, 15:26])


def test_flips_and_right_angles_are_exact_permutations():
    cfg = AugmentConfig(
        elastic_sigma=0.0, flip=True, rot90=True, rotation=False, scale=(1.0, 1.0), gamma=(1.0, 1.0),
        contrast=(1.0, 1.0), brightness=0.0, noise=0.0,
    )
    image, target, weight = _batch(n=16, s=21)
    _, t, _ = Augmenter(cfg, seed=1)(image, target, weight, in_size=21, border=0)
    views = []
    for i in range(16):
        crops = [torch.rot90(target[i], k, (0, 1)) for k in range(4)]
        crops += [torch.flip(c, (1,)) for c in crops]
        match = [k for k, c in enumerate(crops) if torch.equal(c, t[i])]
        assert match, f"tile {i} is not a flip/rotation of its source"
        views.append(match[0])
    assert len(set(views)) > 2  # the seed actually varies the view


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warped_labels_stay_integer_and_weights_stay_attached(seed):
    image, target, weight = _batch(n=4, s=61, seed=seed)
    cfg = AugmentConfig()
    _, t, w = Augmenter(cfg, seed=seed)(image, target, weight, in_size=25, border=6)
    assert t.dtype == torch.int64
    assert set(t.unique().tolist()) <= {0, 1, 2}
    inside = w > 0
    assert inside.float().mean() > 0.9  # the source window has room for every transform
    torch.testing.assert_close(w[inside], t[inside].float() * 10 + 1)


def test_image_and_labels_move_together():
    # an image equal to its labels, warped elastically/rotated/scaled: the bilinear image and the
    # nearest-neighbour labels must agree away from label edges
    yy, xx = np.mgrid[0:121, 0:121]
    disks = (((yy // 20) + (xx // 20)) % 2).astype(np.int64)  # checkerboard of 20-px squares
    target = torch.from_numpy(np.stack([disks] * 4))
    image = target.float()[:, None]
    weight = torch.ones_like(target, dtype=torch.float32)
    cfg = AugmentConfig(gamma=(1.0, 1.0), contrast=(1.0, 1.0), brightness=0.0, noise=0.0)
    x, t, _ = Augmenter(cfg, seed=3)(image, target, weight, in_size=41, border=0)
    agree = ((x[:, 0] > 0.5).long() == t).float().mean()
    assert agree > 0.97
    assert not torch.equal(t, target[:, 40:81, 40:81])  # and it was actually transformed


def test_intensity_changes_only_the_image():
    cfg = AugmentConfig(elastic_sigma=0.0, flip=False, rot90=False, rotation=False, scale=(1.0, 1.0))
    image, target, weight = _batch(s=21)
    x, t, w = Augmenter(cfg, seed=0)(image, target, weight, in_size=21, border=0)
    assert not torch.allclose(x, image)
    assert torch.equal(t, target) and torch.equal(w, weight)


def test_bad_config_is_refused():
    from unet_core.errors import InputError

    with pytest.raises(InputError, match="scale"):
        AugmentConfig(scale=(1.2, 0.8))
    with pytest.raises(InputError, match="elastic_grid"):
        AugmentConfig(elastic_grid=1)


def test_unsupported_windows_are_refused_with_the_fix():
    from unet_core.errors import InputError

    aug = Augmenter(AugmentConfig(), seed=0)
    volume = torch.zeros(2, 1, 9, 9, 7)  # volumes are augmented (tests/test_3d.py), not with Y != X
    with pytest.raises(InputError, match="augment=False"):
        aug(volume, torch.zeros(2, 9, 9, 7, dtype=torch.long), torch.zeros(2, 9, 9, 7), in_size=9, border=0)
    with pytest.raises(InputError, match="augment=False"):
        aug(torch.zeros(2, 1, 9, 9, 9, 9), torch.zeros(2, 9, 9, 9, 9, dtype=torch.long),
            torch.zeros(2, 9, 9, 9, 9), in_size=9, border=0)
    image, target, weight = _batch(n=2, s=21)
    with pytest.raises(InputError, match="shape"):
        aug(image, target[:, :20], weight, in_size=21, border=0)
