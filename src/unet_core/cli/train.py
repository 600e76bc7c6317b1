"""``napari-unet train``: train or fine-tune a segmentation network on annotated images."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..config import (
    DEVICE_DEFAULTS,
    MAX_DEPTH,
    ModelConfig,
    TrainConfig,
    anisotropic_pool_z,
    field_choices,
)
from ..errors import InputError, UNetCoreError
from ._common import check_outputs, drain, int_in

log = logging.getLogger(__name__)
_T = TrainConfig()
_M = _T.model
_CPU = DEVICE_DEFAULTS["cpu"]
_GPU = DEVICE_DEFAULTS["cuda"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a U-Net on annotated images",
        description="Pairs of --image/--labels (repeat for more images; 2D or stacks, whose slices "
        "become samples). Labels are instance labels (0 = background), or class ids with "
        "--semantic. Only the annotated region teaches: the --mask given per image, otherwise the "
        "bounding box of the painted labels grown by --margin pixels. Writes the last state to "
        "OUTPUT (resumable with --resume) and the best-validation weights to OUTPUT-stem.best.pt.",
    )
    p.add_argument("--image", action="append", required=True, help="image TIFF (repeat)")
    p.add_argument("--labels", action="append", required=True, help="labels TIFF for the image at the same position (repeat)")
    p.add_argument("--mask", action="append", help="annotated-region TIFF per image (non-zero = annotated; repeat in the same order)")
    p.add_argument("-o", "--output", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--from", dest="init_from", metavar="MODEL", help="checkpoint, built-in model name (see 'napari-unet models') or napari-unet bioimage.io package to fine-tune (new optimizer; e.g. with new annotations)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue an interrupted run from its last checkpoint (same images)")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"training steps (default {_T.iterations}; with --time-limit alone: until the time is up)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="stop cleanly after this many seconds")
    p.add_argument("--cpu-time", action="store_true", help="measure --time-limit in CPU time of this process instead of wall-clock time")
    p.add_argument("--batch-size", type=int, default=None, help=f"tiles per step (default: {_CPU['batch_size']} on CPU, {_GPU['batch_size']} on CUDA)")
    p.add_argument("--tile-size", type=int, default=None, help=f"output tile edge in pixels (default: {_CPU['tile_size']} on CPU, {_GPU['tile_size']} on CUDA)")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {_T.learning_rate})")
    p.add_argument("--optimizer", choices=field_choices(TrainConfig, "optimizer"), default=_T.optimizer, help="adam (default) or sgd (momentum 0.99, paper)")
    p.add_argument("--loss", default=_T.loss, help=f"loss: wce (weighted cross-entropy, paper; default), dice, wce+dice, ... (default {_T.loss})")
    p.add_argument("--val-fraction", type=float, default=_T.val_fraction, help=f"annotations held out for validation (default {_T.val_fraction}; 0 = none)")
    p.add_argument("--val-every", type=int, default=_T.val_every, help=f"validate every N steps (default {_T.val_every})")
    p.add_argument("--margin", type=int, default=_T.region_margin, help=f"annotated region = painted labels' bounding box + this margin (default {_T.region_margin})")
    p.add_argument("--region-rule", choices=field_choices(TrainConfig, "region_rule"), default=_T.region_rule,
                   help="without --mask: 'box' = painted labels' bounding box + --margin (default); 'ring' = painted "
                        "objects + a --sparse-ring ring around each + background strokes (label 65535)")
    p.add_argument("--sparse-ring", type=int, default=_T.sparse_ring, metavar="PIXELS",
                   help=f"--region-rule ring: background ring width around each painted object (default {_T.sparse_ring})")
    p.add_argument("--target", choices=field_choices(TrainConfig, "target"), default=_T.target,
                   help="two_class = background/foreground + boundary weights (paper; default); three_class = "
                        "background/interior/boundary, watershed from the interiors")
    p.add_argument("--self-supervised", type=float, default=_T.self_supervised, metavar="WEIGHT",
                   help="weight of the Noise2Void denoising loss that also learns from unpainted pixels "
                        f"(U-Net; default {_T.self_supervised:g} = off; see docs/quality.md)")
    p.add_argument("--semantic", action="store_true", help="labels are class ids (multi-class semantic segmentation)")
    p.add_argument("--freeze-encoder", action="store_true", help="fine-tuning: keep the contracting path fixed")
    p.add_argument("--no-augment", action="store_true", help="no elastic/rotation/intensity augmentation")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto", help="mixed precision (auto = on for CUDA)")
    p.add_argument("--device", default=_T.device, help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--seed", type=int, default=_T.seed, help=f"random seed (default {_T.seed})")
    p.add_argument("--channel-axis", type=int, default=None, help="axis of the image holding channels")
    p.add_argument("--voxel-size", type=voxel_size_arg, default=None, metavar="Z,Y,X",
                   help="voxel size of the stacks, e.g. 2,0.5,0.5 (default: the TIFF's metadata, else isotropic)")
    p.add_argument("--tile-z", type=int_in(1, 4096), default=None,
                   help="--dims 3: output tile depth in slices (default: tile size scaled by the voxel size)")
    g = p.add_argument_group("new model (ignored with --from/--resume)")
    g.add_argument("--dims", type=int, choices=(2, 3), default=2,
                   help="2 = 2D U-Net (stacks slice by slice; default), 3 = 3D U-Net on (Z, Y, X) stacks "
                   "(z pooling follows the voxel size)")
    g.add_argument("--arch", choices=field_choices(ModelConfig, "arch"), default=_M.arch, help=f"architecture (default {_M.arch})")
    g.add_argument("--depth", type=int_in(1, MAX_DEPTH), default=_M.depth, help=f"number of poolings (default {_M.depth}; paper 4)")
    g.add_argument("--base-channels", type=int, default=_M.base_channels, help=f"channels of the first level (default {_M.base_channels}; paper 64)")
    g.add_argument("--padding", choices=field_choices(ModelConfig, "padding"), default=_M.padding, help="'valid' = paper (default)")
    g.add_argument("--n-classes", type=int, default=None, help="classes incl. background (semantic: default max label + 1)")
    _add_arch_options(g)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run)


#: options a resumed run takes from its checkpoint (giving them with --resume is refused)
_RESUME_FIXED = {"iterations": "--iterations", "lr": "--lr", "time_limit": "--time-limit",
                 "batch_size": "--batch-size", "tile_size": "--tile-size"}


def _check_options(args: argparse.Namespace) -> None:
    """Refuse contradictory options before any file is read."""
    if len(args.image) != len(args.labels):
        raise InputError(f"got {len(args.image)} --image but {len(args.labels)} --labels; give one --labels per --image")
    if args.mask and len(args.mask) != len(args.image):
        raise InputError("give one --mask per --image, or none")
    if args.init_from and args.resume:
        raise InputError("give either --from (fine-tune) or --resume (continue a run), not both")


def _outputs(args: argparse.Namespace) -> list[Path]:
    """Every file the run writes, checked: the last state and, with validation, NAME.best.pt."""
    from ..training.trainer import best_path

    same = args.resume is not None and Path(args.resume).resolve() == Path(args.output).resolve()
    best = best_path(args.output) if (args.resume or args.val_fraction > 0) else None
    return check_outputs([args.output, best], args.overwrite or same)


def voxel_size_arg(text: str) -> tuple[float, float, float]:
    """``--voxel-size`` 'Z,Y,X': three positive numbers (argparse type; one-line error)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--voxel-size {text!r} does not parse: give three positive numbers z,y,x, e.g. 2,0.5,0.5"
        )
    return values  # type: ignore[return-value]


def voxel_size_of(meta) -> tuple[float, float, float] | None:
    """The (z, y, x) voxel size an image's TIFF metadata states, or None (no resolution tags, or
    no Z axis)."""
    if meta is None or meta.pixel_size is None or not all(a in meta.axes for a in "ZYX"):
        return None
    if len(meta.pixel_size) != len(meta.axes):
        return None
    return tuple(float(meta.pixel_size[meta.axes.index(a)]) for a in "ZYX")  # type: ignore[return-value]


def _read_pairs(args: argparse.Namespace, work_bytes_per_pixel: float) -> tuple[list, int]:
    """The training pairs, each image's channel axis read the same way as by predict, and the
    number of channels (the same for every image). Sets ``args.voxel_size`` from the first
    image's metadata when it was not given."""
    from ..io import read_image, read_tiff
    from ..training.data import TrainingPair

    pairs, channels = [], set()
    for i, (ip, lp) in enumerate(zip(args.image, args.labels)):
        image, meta, ca = read_image(ip, channel_axis=args.channel_axis, work_bytes_per_pixel=work_bytes_per_pixel,
                                     what="train on")
        if args.voxel_size is None:
            args.voxel_size = voxel_size_of(meta)
        labels, _ = read_tiff(lp)
        mask = (read_tiff(args.mask[i])[0] != 0) if args.mask else None
        pairs.append(TrainingPair(image, labels, mask, channel_axis=ca, name=str(ip)))
        channels.add(1 if ca is None else image.shape[ca])
    if len(channels) > 1:
        raise InputError(f"the images have different numbers of channels ({sorted(channels)}); give images alike")
    return pairs, channels.pop()


def _check_resume(args: argparse.Namespace) -> None:
    """Refuse a checkpoint whose training state cannot be resumed, and options that would change
    the saved run (the same values as saved are accepted), before any training."""
    from ..checkpoint import load_checkpoint, validate_train_state
    from ..config import config_from_json

    state = load_checkpoint(args.resume).train_state
    validate_train_state(state, args.resume)
    saved = config_from_json(TrainConfig, state["config"])
    saved_values = {"iterations": saved.iterations, "lr": saved.learning_rate, "time_limit": saved.time_limit,
                    "batch_size": state.get("batch_size"), "tile_size": state.get("tile_size")}
    given = [f"{flag} (saved: {saved_values[key]})" for key, flag in _RESUME_FIXED.items()
             if getattr(args, key) is not None and getattr(args, key) != saved_values[key]]
    if given:
        raise InputError(
            f"--resume continues the saved run with its own settings, so {', '.join(given)} cannot "
            "change it; leave them out, or fine-tune with --from CHECKPOINT to train with new ones"
        )


def _check_model_memory(model, args: argparse.Namespace) -> None:
    """Refuse a new network whose training step would not fit the device, with the figure."""
    from ..device import resolve_device
    from ..memory import available_ram, format_bytes, training_memory

    dev = resolve_device(args.device)
    defaults = DEVICE_DEFAULTS.get(dev.type, _CPU)
    tile, batch = args.tile_size or defaults["tile_size"], args.batch_size or defaults["batch_size"]
    need = training_memory(model, tile, batch)
    if dev.type == "cuda":
        import torch

        have = torch.cuda.mem_get_info(dev)[0]
    else:
        have = available_ram()
    if need > have:
        raise InputError(
            f"this network (arch {model.arch}, depth {model.depth}, base channels {model.base_channels}, "
            f"width {model.width:g}) needs about {format_bytes(need)} to train with {batch} tiles of {tile} "
            f"pixels, but {dev} has {format_bytes(have)} free; choose a smaller --depth, --base-channels, "
            "--width, --tile-size or --batch-size"
        )


def _config(args: argparse.Namespace) -> TrainConfig:
    """The training options of the command line (their ranges checked by the config)."""
    iterations = args.iterations if args.iterations is not None else (10**9 if args.time_limit else _T.iterations)
    return replace(
        _T, iterations=iterations, time_limit=args.time_limit,
        time_clock="process" if args.cpu_time else "wall", batch_size=args.batch_size,
        tile_size=args.tile_size, learning_rate=_T.learning_rate if args.lr is None else args.lr,
        optimizer=args.optimizer, loss=args.loss,
        val_fraction=args.val_fraction, val_every=args.val_every, region_margin=args.margin,
        region_rule=args.region_rule, sparse_ring=args.sparse_ring, target=args.target,
        self_supervised=args.self_supervised, semantic=args.semantic, freeze_encoder=args.freeze_encoder, augment=not args.no_augment,
        amp={"auto": None, "on": True, "off": False}[args.amp], device=args.device, seed=args.seed,
    )


def _claim(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    """Checks before any file is read, then the output lock (held in ``stack``); rank 0 only."""
    from ..io import output_lock

    _check_options(args)
    _config(args)  # the options' ranges are checked here, before any file is read
    out = _outputs(args)[0]
    if args.resume:
        _check_resume(args)
    stack.enter_context(output_lock(out))


def run(args: argparse.Namespace) -> int:
    from ..training.distributed import session

    with session(args.device) as ctx:  # one process, or one rank of a torchrun job
        if not ctx.is_main:
            logging.getLogger().setLevel(logging.ERROR)  # rank 0 alone logs and prints
        with ctx.main_only(lambda stack: _claim(args, stack), report=_print_refusal):
            try:
                return _run(args, ctx)
            except UNetCoreError as exc:
                if ctx.is_main:
                    raise
                log.error("rank %d: %s", ctx.info.rank, exc)
                raise SystemExit(2) from None


def _print_refusal(exc: Exception) -> None:
    """Rank 0's line for a refused run under torchrun (printed before the ranks exit with 2)."""
    from . import _one_line

    print(f"napari-unet train: error: {_one_line(exc)}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, ctx) -> int:
    """Read the data and train (after :func:`_claim`); ``ctx`` is the distributed session."""
    from ..memory import TRAIN_BYTES_PER_PIXEL
    from ..training.trainer import train

    config = replace(_config(args), device=ctx.device)
    pairs, in_ch = _read_pairs(args, TRAIN_BYTES_PER_PIXEL)
    model = replace(
        _M, arch=args.arch, in_channels=in_ch, depth=args.depth, base_channels=args.base_channels,
        padding=args.padding, n_classes=args.n_classes or _M.n_classes, class_names=(),
        width=args.width, output_stride=args.output_stride, spatial_dims=args.dims,
        pool_z=anisotropic_pool_z(args.voxel_size, args.depth) if args.dims == 3 and args.voxel_size else (),
    )
    config = replace(config, voxel_size=args.voxel_size or (), tile_z=args.tile_z)
    if args.dims == 3:
        log.info("3D U-Net, voxel size %s, z pooling per level %s", args.voxel_size or "isotropic",
                 model.pool_z or "all")
    init_from = args.init_from
    if not (init_from or args.resume) and args.dims == 2:  # the estimate is for 2D tiles
        _check_model_memory(model, args)
    with tempfile.TemporaryDirectory(prefix="napari-unet-vgg16-") as tmp:
        if args.vgg16_weights:  # the VGG16-initialised FCN becomes the checkpoint to fine-tune
            if args.resume:
                raise InputError("give either --resume or --vgg16-weights, not both")
            init_from, model = _vgg16_init(model, args.vgg16_weights, init_from, Path(tmp) / "vgg16-init.pt")
        t0 = time.perf_counter()
        with _stop_on_ctrl_c(sigterm=ctx.distributed) as stop:
            result = drain(train(pairs, replace(config, model=model), output=Path(args.output),
                                 init_from=init_from, resume=args.resume, stop=stop, distributed=ctx),
                           quiet=not ctx.is_main)
    if ctx.is_main:
        _report(result, time.perf_counter() - t0)
    return 130 if result.stop_reason == "user" else 0


def _report(result, seconds: float) -> None:
    """Print the summary of a finished run."""
    lines = [f"trained {result.steps} steps in {seconds:.0f} s; final training loss {result.metrics['loss']:.4f}"]
    if result.stop_reason == "user":
        lines[0] += " (stopped with Ctrl-C)"
    val = {k[4:]: v for k, v in result.metrics.items() if k.startswith("val_") and not math.isnan(v)}
    if val:
        lines.append("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in val.items()))
    lines.append(f"last checkpoint: {result.checkpoint} (resume with --resume)")
    if result.best_checkpoint:
        lines.append(f"best checkpoint: {result.best_checkpoint}")
    print("\n".join(lines))


@contextlib.contextmanager
def _stop_on_ctrl_c(sigterm: bool = False) -> Iterator[threading.Event]:
    """Ctrl-C sets the yielded event: training saves after its current step; a second one aborts.

    With ``sigterm`` (under torchrun, which forwards Ctrl-C and cluster pre-emption as SIGTERM)
    SIGTERM does the same."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step (Ctrl-C again aborts without saving)", file=sys.stderr, flush=True)

    signals = (signal.SIGINT, signal.SIGTERM) if sigterm else (signal.SIGINT,)
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------- FCN / DeepLabv3+ options
def _add_arch_options(g) -> None:
    g.add_argument("--width", type=float, default=_M.width,
                   help=f"fcn*/deeplabv3plus: channel multiplier (default {_M.width:g} = published; 0.25 suits a CPU)")
    g.add_argument("--output-stride", type=int, choices=field_choices(ModelConfig, "output_stride"), default=_M.output_stride,
                   help=f"deeplabv3plus: encoder output stride (default {_M.output_stride})")
    g.add_argument("--vgg16-weights", metavar="PATH",
                   help="fcn*: start from torchvision VGG16 ImageNet weights (a state-dict file you have; "
                   "needs --width 1)")


def _vgg16_init(model, weights: str, init_from, start: Path):
    """Build the FCN, load VGG16 weights, save it as the starting checkpoint ``start``."""
    from ..checkpoint import save_checkpoint
    from ..models import build_model
    from ..models.fcn import load_vgg16_weights

    if init_from:
        raise InputError("give either --from or --vgg16-weights, not both")
    if not model.arch.startswith("fcn"):
        raise InputError(f"--vgg16-weights needs an FCN (--arch fcn32s, fcn16s or fcn8s), not {model.arch!r}")
    model = replace(model, batch_norm=False)  # VGG16 has no batch norm
    net = build_model(model)
    load_vgg16_weights(net, weights)
    save_checkpoint(start, net, meta={"init": "torchvision VGG16", "weights": str(weights)})
    log.info("VGG16-initialised %s saved to %s", model.arch, start)
    return start, model
