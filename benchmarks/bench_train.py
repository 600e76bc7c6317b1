"""Training throughput: the real pipeline vs a bare loop on pre-made tensors, same model and tile.

    PYTHONPATH=src:. python benchmarks/bench_train.py [--device cpu] [--steps 40] [--threads 1]

Three variants run interleaved (A B C A B C ...) in the same process, so machine load hits them
alike; each round times ``--steps`` optimisation steps after ``--warmup`` untimed ones:

* bare: the real optimisation step (:meth:`unet_core.training.trainer.Trainer.train_step`:
  forward/backward/optimizer, mixed precision as configured) on one pre-made batch already on the
  device (no data work);
* pipeline: :func:`unet_core.training.trainer.train` with augmentation (tile sampling from the
  annotated region, elastic + affine + intensity augmentation on the device, the loss);
* no-augment: the same pipeline without augmentation.

Reports the median steps/s over rounds, per wall-clock second and per CPU second of this process
(``time.process_time``, fairer on a shared machine), the pipeline's overhead vs bare, and, measured
directly by instrumenting the sampler and the augmenter, the share of the pipeline's CPU time
spent in tile sampling + augmentation (less noisy than the difference of two rates on a busy
machine). On a GPU the wall-clock columns are the relevant ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

#: CPU seconds spent inside tile sampling and augmentation (instrumented, see _instrument)
DATA_CPU = {"s": 0.0}


def _instrument() -> None:
    """Wrap the sampler and the augmenter to add their CPU time to DATA_CPU (direct breakdown)."""
    from unet_core.training.augment import Augmenter
    from unet_core.training.data import TileSampler

    for cls, name in ((TileSampler, "sample_tensors"), (Augmenter, "__call__")):
        real = getattr(cls, name)

        def timed(self, *a, _real=real, **k):
            c = time.process_time()
            try:
                return _real(self, *a, **k)
            finally:
                DATA_CPU["s"] += time.process_time() - c

        setattr(cls, name, timed)


def _pipeline_rate(pairs, cfg, steps: int, warmup: int) -> tuple[float, float, float]:
    from unet_core.training.trainer import train

    gen = train(pairs, replace(cfg, iterations=steps + warmup + 1))
    for _ in range(warmup):
        next(gen)
    DATA_CPU["s"] = 0.0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        p = next(gen)
        assert p.stage == "train"
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    gen.close()
    return steps / w, steps / c, DATA_CPU["s"] / c


def _bare_rate(pairs, cfg, steps: int, warmup: int) -> tuple[float, float, float]:
    from unet_core.training.trainer import Trainer

    trainer = Trainer(pairs, cfg)
    dev, n, size, out = trainer.device, trainer.batch_size, trainer.in_size, trainer.out_size
    x = torch.rand(n, cfg.model.in_channels, size, size, device=dev)
    y = (torch.rand(n, out, out, device=dev) > 0.5).long()
    w = torch.rand(n, out, out, device=dev) + 0.5
    for _ in range(warmup):
        trainer.train_step((x, y, w))  # reads the loss every step, as the pipeline does
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        trainer.train_step((x, y, w))
    return steps / (time.perf_counter() - w0), steps / (time.process_time() - c0), 0.0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--tile-size", type=int, default=None, help="default: the device default")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the device default")
    ap.add_argument("--base-channels", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from unet_core.config import TrainConfig, resolve_train_config
    from unet_core.device import resolve_device
    from unet_core.sample_data import synthetic_nuclei
    from unet_core.training.data import TrainingPair
    from unet_core.training.trainer import Trainer

    dev = resolve_device(args.device)
    cfg = TrainConfig(device=str(dev), val_fraction=0.0, tile_size=args.tile_size, batch_size=args.batch_size)
    model_cfg = cfg.model
    if args.base_channels:
        model_cfg = replace(model_cfg, base_channels=args.base_channels)
    if args.depth:
        model_cfg = replace(model_cfg, depth=args.depth)
    cfg = resolve_train_config(replace(cfg, model=model_cfg), dev.type)
    image, labels = synthetic_nuclei((512, 512), seed=0)
    pairs = [TrainingPair(image, labels, name="synthetic")]
    probe = Trainer(pairs, cfg)
    in_size, out_size = probe.in_size, probe.out_size
    del probe
    variants = {
        "bare loop (pre-made tensors)": lambda: _bare_rate(pairs, cfg, args.steps, args.warmup),
        "pipeline (sampling + augmentation)": lambda: _pipeline_rate(pairs, cfg, args.steps, args.warmup),
        "pipeline, no augmentation": lambda: _pipeline_rate(pairs, replace(cfg, augment=False), args.steps, args.warmup),
    }
    _instrument()
    rates: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            rates[name].append(fn())
    print(f"device {dev}, torch threads {torch.get_num_threads()}, model depth {cfg.model.depth} / "
          f"{cfg.model.base_channels} base channels, batch {cfg.batch_size}, tile {in_size}->{out_size} px, "
          f"{args.steps} steps x {args.rounds} rounds (median)")
    print(f"{'variant':38s} {'steps/s (wall)':>15s} {'steps/CPU-s':>12s} {'overhead (wall)':>16s} "
          f"{'overhead (CPU)':>15s} {'in sampling+augment (CPU)':>26s}")
    bare_w = statistics.median(r[0] for r in rates["bare loop (pre-made tensors)"])
    bare_c = statistics.median(r[1] for r in rates["bare loop (pre-made tensors)"])
    for name, rs in rates.items():
        w = statistics.median(r[0] for r in rs)
        c = statistics.median(r[1] for r in rs)
        d = statistics.median(r[2] for r in rs)
        print(f"{name:38s} {w:15.2f} {c:12.2f} {100 * (bare_w / w - 1):15.1f}% {100 * (bare_c / c - 1):14.1f}% "
              f"{100 * d:25.1f}%")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
