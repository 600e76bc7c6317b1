"""Watershed seeds: :func:`unet_core.local_maxima.label_peaks` vs skimage's ``peak_local_max``.

    PYTHONPATH=src:. python benchmarks/bench_peaks.py [--size 1152] [--repeats 3]

The instance post-processing of one block (:func:`unet_core.postprocess.instances_from_foreground`:
labels, distance transform, seeds, watershed, minimum size) on realistic foregrounds, timed with
the seeds from skimage's per-label loop (the baseline, what the project used before) and from
``label_peaks``, in the same run, best of ``--repeats``; the labels must be identical. Foregrounds
(``size``² each, thresholded at the model's own post-processing threshold):

* ``tiny / discs``: the 40-CPU-s-trained depth-2 4-channel U-Net of ``bench_cli_huge.py`` on the
  discs-on-noise image of ``bench_stages.py`` (many small objects: the block-wise benchmarks' case);
* ``nuclei / discs``: the built-in ``nuclei`` model on the same image;
* ``nuclei / synthetic nuclei``: the built-in ``nuclei`` model on ``sample_data.synthetic_nuclei``.

Prints a markdown table (seconds of the seed search alone and of the whole post-processing) and
the load average. One torch/BLAS thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_blockwise import _blobs  # noqa: E402
from bench_cli_huge import make_model  # noqa: E402


def _skimage_peaks(image, labels, min_distance, footprint_shape=None):
    from skimage.feature import peak_local_max

    footprint = None if footprint_shape is None else np.ones(footprint_shape, bool)
    return peak_local_max(image, min_distance=min_distance, footprint=footprint, labels=labels, exclude_border=False)


def foregrounds(size: int, workdir: Path):
    """Yield (name, boolean foreground, PostprocessConfig)."""
    from unet_core.pipeline import postprocess_for
    from unet_core.postprocess import foreground_probability
    from unet_core.sample_data import synthetic_nuclei
    from unet_core.sources import load_model
    from unet_core.tiling import predict_tiled

    discs = _blobs(np.zeros((size, size), np.uint8), {None: {"array-location": [(0, size), (0, size)]}})
    nuclei_img = synthetic_nuclei((size, size), seed=7)[0]
    tiny = workdir / "tiny.pt"
    make_model(tiny)
    for model_name, source, image_name, image in [
        ("tiny", tiny, "discs", discs),
        ("nuclei", "nuclei", "discs", discs),
        ("nuclei", "nuclei", "synthetic nuclei", nuclei_img),
    ]:
        ckpt = load_model(source)
        post = postprocess_for(ckpt)
        probs = predict_tiled(ckpt.model, image, device="cpu")
        yield f"{model_name} / {image_name}", foreground_probability(probs) > post.threshold, post


def best_of(repeats: int, fn, *args) -> tuple[float, object]:
    """Least CPU seconds of ``repeats`` calls of ``fn(*args)``, and its result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.process_time()
        out = fn(*args)
        times.append(time.process_time() - t)
    return min(times), out


def compare(name: str, fg: np.ndarray, post, repeats: int) -> str:
    """One table row: seeds alone and the whole block post-processing, skimage vs ours."""
    from scipy import ndimage as ndi

    import unet_core.local_maxima as lm
    from unet_core.postprocess import instances_from_foreground

    ours = lm.label_peaks
    labels, n = ndi.label(fg)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(fg), 1.0)
    md = post.min_distance
    s_seed, ref = best_of(repeats, _skimage_peaks, dist, labels, md)
    o_seed, got = best_of(repeats, ours, dist, labels, md)
    assert np.array_equal(ref, got), name
    args = (fg, post.split_touching, post.min_size, md)
    lm.label_peaks = _skimage_peaks  # instances_from_foreground imports it at each call
    try:
        s_all, ref_labels = best_of(repeats, instances_from_foreground, *args)
    finally:
        lm.label_peaks = ours
    o_all, our_labels = best_of(repeats, instances_from_foreground, *args)
    same = "yes" if np.array_equal(ref_labels, our_labels) else "NO"
    return (f"| {name} | {n} | {md} | {s_seed:.3f} | {o_seed:.3f} | {s_seed / o_seed:.2f}x "
            f"| {s_all:.3f} | {o_all:.3f} | {s_all / o_all:.2f}x | {same} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1152)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| foreground | objects | min_distance | seeds: skimage s | seeds: ours s | ratio "
          "| post-processing: skimage s | ours s | ratio | labels identical |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as work:
        for name, fg, post in foregrounds(args.size, Path(work)):
            print(compare(name, fg, post, args.repeats), flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
