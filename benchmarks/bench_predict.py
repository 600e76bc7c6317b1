"""Prediction throughput and peak memory: our overlap-tile predictor vs a whole-image pass and MONAI.

Same image, same network weights, same run. Every contender runs in its own subprocess (so its
peak RSS, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, is its own) and times ``--repeats``
passes after one warm-up pass; the best pass counts (the machine is shared). Prints a table with
MPix/s, ratios against the best MONAI setting, peak RSS and the max |difference| of the
probabilities against the whole-image pass of the same network.

Contenders (4-level U-Net, 16 base channels, He-initialised with a fixed seed):
- ``ours-valid``: :func:`unet_core.predict_tiled` on the paper's unpadded ('valid') net, automatic
  tiles (or ``--tile``), with the optimised CPU graph (:mod:`unet_core.models.unet_inference`;
  ``--plain`` adds the plain module, ``optimize=False``, for the same-run comparison);
- ``whole-valid``: one forward pass over the whole mirror-padded image (same net);
- ``monai-same``: ``monai.inferers.sliding_window_inference`` on the 'same' variant of the net
  (identical weights), gaussian blending, swept over roi size / overlap / batch;
- ``ours-same``: our tiler on the 'same' variant;
- ``big``: peak RSS of ``ours-valid`` on an 8192^2 image.

Usage::

    PYTHONPATH=src:. python benchmarks/bench_predict.py [--size 2048] [--repeats 3] [--big 8192]

The image is the ISBI 2012 EM stack (``../shared/data/isbi2012`` relative to the repository, or
``$ISBI2012_DIR``) tiled to the requested size, or the built-in synthetic sample when absent.
Requires MONAI (``pip install -r benchmarks/requirements.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def load_image(size: int) -> tuple[np.ndarray, str]:
    """A (size, size) uint8 image: ISBI 2012 slices tiled side by side, or the synthetic sample."""
    dirs = [os.environ["ISBI2012_DIR"]] if os.environ.get("ISBI2012_DIR") else [
        ROOT.parent / "shared" / "data" / "isbi2012",  # a clone beside the shared folder
        ROOT.parent.parent / "shared" / "data" / "isbi2012",  # a git worktree one level deeper
    ]
    f = next((Path(d) / "train-volume.tif" for d in dirs if (Path(d) / "train-volume.tif").exists()), None)
    if f is not None:
        import tifffile

        vol = tifffile.imread(f)
        k = -(-size // vol.shape[1])
        rows = [np.concatenate([vol[(i * k + j) % len(vol)] for j in range(k)], axis=1) for i in range(k)]
        return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size]), f"ISBI 2012 EM ({f})"
    from unet_core.sample_data import synthetic_nuclei

    img, _ = synthetic_nuclei((size, size), seed=1)
    return img, "synthetic nuclei (ISBI 2012 data not found)"


def build_nets():
    import torch

    from unet_core.models.unet import UNet

    torch.manual_seed(SEED)
    valid = UNet(depth=4, base_channels=16, padding="valid").eval()
    same = UNet(depth=4, base_channels=16, padding="same").eval()
    same.load_state_dict(valid.state_dict())  # same weights, padded convolutions
    return valid, same


# ---------------------------------------------------------------------------- worker side
def worker(spec: dict) -> dict:
    import torch

    from unet_core.normalization import apply_normalization, normalization_stats
    from unet_core.tiling import predict_tiled, predict_whole

    torch.set_num_threads(spec["threads"])
    image, _ = load_image(spec["size"])
    valid, same = build_nets()
    kind = spec["kind"]
    extra: dict = {}

    if kind == "ours-valid":
        def run():
            return predict_tiled(valid, image, device="cpu", tile_shape=spec.get("tile"),
                                 channels_last=spec.get("channels_last"), optimize=spec.get("optimize", True))
    elif kind == "ours-same":
        def run():
            return predict_tiled(same, image, device="cpu", tile_shape=spec.get("tile"),
                                 optimize=spec.get("optimize", True))
    elif kind == "whole-valid":
        def run():
            return predict_whole(valid, image)
    elif kind == "monai-same":
        from monai.inferers import sliding_window_inference

        def predictor(x):
            return torch.softmax(same(x), dim=1)

        def run():  # normalisation included, as in ours
            lo, sc = normalization_stats(image, same.config.normalization)
            x = torch.from_numpy(apply_normalization(image[None], lo, sc))[None]
            with torch.inference_mode():
                out = sliding_window_inference(
                    x, roi_size=(spec["roi"], spec["roi"]), sw_batch_size=spec["batch"], predictor=predictor,
                    overlap=spec["overlap"], mode="gaussian",
                )
            return out[0].numpy()
    else:
        raise SystemExit(f"unknown contender {kind}")

    times = []
    out = None
    for i in range(spec["repeats"] + (1 if spec["warmup"] else 0)):
        t0 = time.perf_counter()
        out = run()
        dt = time.perf_counter() - t0
        if i or not spec["warmup"]:
            times.append(dt)
    extra["times"] = times
    extra["best_s"] = min(times)
    extra["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra["load"] = os.getloadavg()[0]
    if spec.get("save"):
        np.save(spec["save"], out.astype(np.float32))
    return extra


# ---------------------------------------------------------------------------- driver side
def run_worker(spec: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    r = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env
    )
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--big", type=int, default=8192, help="edge of the peak-RSS image (0: skip)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--tile", type=int, action="append", help="also run ours-valid with this tile (repeatable)")
    ap.add_argument("--quick", action="store_true", help="only roi 256 for MONAI")
    ap.add_argument("--monai", action="append", metavar="ROI,OVERLAP,BATCH",
                    help="MONAI setting to run (repeatable; default: a sweep of six)")
    ap.add_argument("--no-warmup", action="store_true", help="time every pass (no warm-up pass)")
    ap.add_argument("--channels-last", action="store_true", help="also run ours-valid in channels_last layout")
    ap.add_argument("--plain", action="store_true",
                    help="also run ours-valid with the plain module (optimize=False, the tiler before the optimised graph)")
    ap.add_argument("--skip-monai", action="store_true", help="no MONAI contenders")
    ap.add_argument("--skip-same", action="store_true", help="skip ours-same")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import torch

    threads = args.threads or torch.get_num_threads()
    image, source = load_image(args.size)
    mpix = args.size**2 / 1e6
    print(f"# prediction benchmark: {args.size}^2 image ({source}), 4-level U-Net, 16 base channels")
    print(f"# {os.cpu_count()} CPU(s) visible, torch {torch.__version__}, {threads} thread(s), "
          f"best of {args.repeats}{'' if args.no_warmup else ' after 1 warm-up'}, each contender in its own process; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    base = {"size": args.size, "threads": threads, "repeats": args.repeats, "warmup": not args.no_warmup}
    contenders: list[tuple[str, dict]] = [
        ("ours-valid (auto tiles)", {"kind": "ours-valid", "save": str(tmp / "ours.npy")}),
        ("whole-image pass (valid)", {"kind": "whole-valid", "save": str(tmp / "whole.npy")}),
    ]
    if args.plain:
        contenders.append(("ours-valid (auto tiles, plain module)",
                           {"kind": "ours-valid", "optimize": False, "save": str(tmp / "ours_plain.npy")}))
    if args.channels_last:
        contenders.append(("ours-valid (auto tiles, channels_last)",
                           {"kind": "ours-valid", "channels_last": True, "save": str(tmp / "ours_cl.npy")}))
    for t in args.tile or []:
        contenders.append((f"ours-valid (tile {t})", {"kind": "ours-valid", "tile": t, "save": str(tmp / f"ours{t}.npy")}))
    if args.monai:
        monai_settings = [(int(r), float(o), int(b)) for r, o, b in (m.split(",") for m in args.monai)]
    elif args.quick:
        monai_settings = [(256, 0.25, 1)]
    else:
        monai_settings = [
            (256, 0.25, 1), (256, 0.25, 4), (512, 0.25, 1), (384, 0.25, 1), (256, 0.5, 1), (512, 0.125, 1),
        ]
    for roi, ov, b in [] if args.skip_monai else monai_settings:
        contenders.append((f"MONAI same roi {roi} ov {ov} b {b}",
                           {"kind": "monai-same", "roi": roi, "overlap": ov, "batch": b}))
    if not args.skip_same:
        contenders.append(("ours-same (auto tiles)", {"kind": "ours-same", "save": str(tmp / "ours_same.npy")}))

    results = {}
    for name, spec in contenders:
        res = run_worker({**base, **spec})
        results[name] = res
        if "error" in res:
            print(f"{name}: failed: {res['error']}", file=sys.stderr)
        else:
            print(f"  {name}: best {res['best_s']:.2f}s  times {' '.join(f'{t:.2f}' for t in res['times'])}  "
                  f"maxrss {res['maxrss_mb']:.0f} MB  load {res['load']:.1f}", file=sys.stderr, flush=True)

    whole = np.load(tmp / "whole.npy") if (tmp / "whole.npy").exists() else None
    monai = {k: v for k, v in results.items() if k.startswith("MONAI") and "best_s" in v}
    best_monai = min(monai.values(), key=lambda r: r["best_s"]) if monai else None
    print()
    print("| contender | best s | MPix/s | x best MONAI | peak RSS MB | max abs diff vs whole (valid) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in contenders:
        r = results[name]
        if "best_s" not in r:
            print(f"| {name} | failed | | | | |")
            continue
        diff = ""
        if whole is not None and spec.get("kind") == "ours-valid":
            diff = f"{np.abs(np.load(spec['save']) - whole).max():.1e}"
        ratio = f"{best_monai['best_s'] / r['best_s']:.2f}" if best_monai else ""
        print(f"| {name} | {r['best_s']:.2f} | {mpix / r['best_s']:.3f} | {ratio} | {r['maxrss_mb']:.0f} | {diff} |")

    if args.big:
        r = run_worker({**base, "size": args.big, "kind": "ours-valid", "repeats": 1, "warmup": False})
        if "best_s" in r:
            print(f"\n{args.big}^2 image, ours-valid auto tiles: {r['best_s']:.1f} s "
                  f"({args.big**2 / 1e6 / r['best_s']:.3f} MPix/s), peak RSS {r['maxrss_mb']:.0f} MB "
                  f"({r['maxrss_mb'] / 1024:.2f} GB; goal <= 3 GB)")
        else:
            print(f"\n{args.big}^2 image failed: {r['error']}")
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
