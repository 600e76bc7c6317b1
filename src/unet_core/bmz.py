"""BioImage Model Zoo (bioimage.io) packages: export a checkpoint, load a package back.

:func:`export_bmz` writes a checkpoint as a bioimage.io model package (spec 0.5) that runs in
``bioimageio.core``, deepImageJ, ilastik, QuPath and Fiji: ``pytorch_state_dict`` weights with
the standalone architecture :mod:`unet_core.bmz_architecture` (imports only torch), TorchScript
weights beside them, the valid input sizes (``ParameterizedSize``), the output size of 'valid'
nets (``SizeReference`` offset, the halo the model already crops), the model's normalisation as
``scale_range`` preprocessing, test tensors predicted by the model itself, a cover and a README.
The package outputs class probabilities ``(batch, channel, y, x)``.

:func:`load_bmz` reads a package: one written here (tagged ``napari-unet``, with its
:class:`~unet_core.config.ModelConfig` under ``config.napari_unet``) comes back as a native
:class:`~unet_core.checkpoint.Checkpoint` (tiled prediction, fine-tuning); any other runs
through ``bioimageio.core`` behind :class:`BmzPredictor`. Packages that would need a network
download or have no weights this machine can run are refused before anything runs.

``bioimageio.core`` is an optional dependency (``pip install "napari-unet[bmz]"``), imported
only when these functions are called; neither it nor torch is imported with this module.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CheckpointError, InputError

if TYPE_CHECKING:
    from .progress import Progress

log = logging.getLogger(__name__)

#: tag and ``config`` key that mark a package written by :func:`export_bmz`
TAG = "napari-unet"
CONFIG_KEY = "napari_unet"
#: version of what :func:`export_bmz` writes under ``config.napari_unet``
PACKAGE_FORMAT_VERSION = 1
#: weight formats :class:`BmzPredictor` runs (torch only: no TensorFlow/ONNX runtimes here)
SUPPORTED_WEIGHTS = ("pytorch_state_dict", "torchscript")
#: the U-Net paper, cited by every exported package unless ``cite`` is given
UNET_PAPER = (
    "Ronneberger, Fischer and Brox: U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation, MICCAI 2015",
    "10.1007/978-3-319-24574-4_28",
)
_INSTALL_HINT = 'install the bioimage.io support with: pip install "napari-unet[bmz]"'


@dataclass(frozen=True)
class BmzExportOptions:
    """What :func:`export_bmz` writes besides the model itself.

    Attributes
    ----------
    authors : tuple of str
        Names of the people who made the model (at least one).
    license : str
        SPDX licence identifier of the package, e.g. 'CC-BY-4.0', 'MIT'.
    name : str or None
        Human-readable model name; default: from the checkpoint file name.
    description : str or None
        One or two sentences; default: a description made from the model config.
    cite : tuple of (str, str)
        (text, DOI) pairs; default: the U-Net paper.
    tags : tuple of str
        Extra tags besides the ones every package gets.
    test_size : int
        Minimum edge of the test tensor's output in pixels (the input is the next valid size).
    """

    authors: tuple[str, ...] = ()
    license: str = "CC-BY-4.0"
    name: str | None = None
    description: str | None = None
    cite: tuple[tuple[str, str], ...] = (UNET_PAPER,)
    tags: tuple[str, ...] = ()
    test_size: int = 64

    def __post_init__(self) -> None:
        if not self.authors or not all(isinstance(a, str) and a.strip() for a in self.authors):
            raise InputError("a bioimage.io package needs at least one author; give --author NAME")
        if self.test_size < 8:
            raise InputError(f"test_size must be >= 8 pixels, got {self.test_size}")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def _bioimageio():
    """Import ``bioimageio.spec`` (and core), or raise :class:`InputError` saying how to install it."""
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec
        import pydantic
    except ImportError as exc:
        raise InputError(f"bioimage.io packages need bioimageio.core ({exc}); {_INSTALL_HINT}") from None
    spec_version = getattr(bioimageio.spec, "__version__", "0")
    if _version_tuple(pydantic.VERSION) >= (2, 14) and _version_tuple(spec_version) <= (0, 5, 12):
        raise InputError(
            f"bioimageio.spec {spec_version} cannot write or read packages with pydantic "
            f"{pydantic.VERSION}; {_INSTALL_HINT} (it pins pydantic<2.14)"
        )
    return bioimageio.spec


# ------------------------------------------------------------------------------------ export
def export_bmz(
    checkpoint,
    output_zip: str | os.PathLike,
    *,
    authors: Sequence[str],
    license: str = "CC-BY-4.0",
    name: str | None = None,
    description: str | None = None,
    cite: Sequence[tuple[str, str]] = (UNET_PAPER,),
    tags: Sequence[str] = (),
    test_image: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint as a bioimage.io model package (zip, spec 0.5).

    Parameters
    ----------
    checkpoint : path or Checkpoint
        A napari-unet checkpoint (U-Net architecture).
    output_zip : path
        The package to write (``.zip``); written atomically.
    authors, license, name, description, cite, tags
        See :class:`BmzExportOptions`.
    test_image : ndarray, optional
        ``(Y, X)`` or ``(C, Y, X)`` image to make the test tensors from (its centre is cropped,
        or mirrored out, to a valid size); default: the built-in synthetic nuclei sample.
    overwrite : bool
        Replace an existing ``output_zip``.

    Returns
    -------
    Path
        ``output_zip``.

    Raises
    ------
    InputError
        bioimageio.core missing, no author, an architecture other than the U-Net, a bad licence
        or test image, or ``output_zip`` exists without ``overwrite``.
    CheckpointError
        An unreadable checkpoint.
    """
    options = BmzExportOptions(
        authors=tuple(authors), license=license, name=name, description=description,
        cite=tuple(tuple(c) for c in cite), tags=tuple(tags),
    )
    out = Path(output_zip)
    if out.suffix.lower() != ".zip":
        raise InputError(f"{out}: a bioimage.io package is a .zip file; give a name ending in .zip")
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass overwrite=True (CLI: --overwrite) or choose another name")
    ckpt = _as_checkpoint(checkpoint)
    if ckpt.config.arch != "unet":
        raise InputError(
            f"bioimage.io export supports U-Nets; this checkpoint is a {ckpt.config.arch!r} network"
        )
    _bioimageio()
    _license_id(options.license)  # before the slow part
    from .io import atomic_path

    with tempfile.TemporaryDirectory(prefix="napari-unet-bmz-") as tmp:
        files = _write_package_files(ckpt, Path(tmp), options, test_image)
        descr = _model_description(ckpt, files, options)
        with atomic_path(out, overwrite=overwrite) as tmp_zip:
            _save_package(descr, tmp_zip)
    log.info("wrote bioimage.io package %s", out)
    return out


def _as_checkpoint(checkpoint):
    """A loaded :class:`~unet_core.checkpoint.Checkpoint` from a path or a Checkpoint."""
    from .checkpoint import Checkpoint, load_checkpoint

    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    return load_checkpoint(checkpoint)


def _save_package(descr, path: Path) -> None:
    """``save_bioimageio_package`` to ``path`` (any file name: it is renamed afterwards)."""
    from bioimageio.spec import save_bioimageio_package

    with tempfile.TemporaryDirectory(prefix="napari-unet-bmz-zip-") as tmp:
        zipped = Path(tmp) / "package.zip"
        save_bioimageio_package(descr, output_path=zipped)
        os.replace(zipped, path)


def valid_size_rule(model) -> tuple[int, int]:
    """``(min, step)`` of the input edges a package accepts: ``min + n * step``, n = 0, 1, ...

    'valid' U-Nets accept exactly these sizes (step ``2**depth``). 'same' nets accept any size
    but pad to a multiple of ``2**depth`` inside, so their rule asks for those multiples, from
    the first one that keeps a pixel after cropping the output halo (:func:`output_halo`).
    """
    step = int(model.size_multiple)
    if model.border == 0:
        return -(-(2 * output_halo(model) + 1) // step) * step, step
    lo = model.valid_input_size(1)
    if not all(model.is_valid_input_size(lo + k * step) for k in range(4)):
        raise InputError(f"the network's valid input sizes are not {lo} + n * {step}; cannot export it")
    return lo, step


def output_halo(model) -> int:
    """Output pixels per side that a tiling consumer should crop (0 for 'valid' nets).

    A 'valid' net crops its border itself (the package says so with a size offset); a padded
    net's outputs within ``context`` pixels of a tile edge depend on its zero padding.
    """
    return 0 if model.border else int(model.context)


def test_input_from(model, image: np.ndarray | None, min_output: int) -> np.ndarray:
    """The test input tensor ``(1, C, n, n)`` float32 (raw intensities) of a valid edge ``n``.

    Parameters
    ----------
    model : SegmentationNet
    image : ndarray or None
        ``(Y, X)`` or ``(C, Y, X)``; None: the synthetic nuclei sample (repeated per channel).
    min_output : int
        Smallest output edge wanted.
    """
    from .arrays import crop_reflect
    from .normalization import check_image_values

    c = model.config.in_channels
    lo, step = valid_size_rule(model)
    n = lo
    while model.output_size(n) < min_output:
        n += step
    if image is None:
        from .sample_data import synthetic_nuclei

        image = np.repeat(synthetic_nuclei((max(n, 128),) * 2, seed=0)[0][None], c, axis=0)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != c:
        raise InputError(
            f"test image of shape {image.shape} does not fit a model reading {c} channel(s); "
            f"give (Y, X) or ({c}, Y, X)"
        )
    check_image_values(image)
    y0, x0 = (image.shape[1] - n) // 2, (image.shape[2] - n) // 2
    return crop_reflect(image, (y0, x0), (n, n)).astype(np.float32)[None]


def _predict_test_output(ckpt, x: np.ndarray) -> np.ndarray:
    """Probabilities ``(1, K, h, w)`` float32 of the model on test input ``x`` ``(1, C, n, n)``."""
    import torch

    from .normalization import apply_normalization, normalization_stats

    lo, sc = normalization_stats(x[0], ckpt.config.normalization, channel_axis=0)
    xn = apply_normalization(x[0], lo, sc)[None]
    model = ckpt.model.cpu().eval()
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(xn)).float(), dim=1).numpy()


@dataclass(frozen=True)
class _PackageFiles:
    """The files of a package before zipping, and what describes them."""

    folder: Path
    test_input: Path
    test_output: Path
    state_dict: Path
    torchscript: Path
    architecture: Path
    arch_kwargs: dict[str, Any]
    readme: Path
    cover: Path
    input_rule: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)


def _architecture_kwargs(config) -> dict[str, Any]:
    """Keyword arguments of :class:`unet_core.bmz_architecture.UNet` for a ModelConfig."""
    return dict(
        in_channels=config.in_channels, n_classes=config.n_classes, depth=config.depth,
        base_channels=config.base_channels, padding=config.padding,
        batch_norm=bool(config.batch_norm), up_mode=config.up_mode, softmax=True,
    )


def _write_package_files(ckpt, folder: Path, options: BmzExportOptions, test_image) -> _PackageFiles:
    """Weights, architecture, test tensors, cover and README of a package, in ``folder``."""
    import shutil

    import torch

    from . import bmz_architecture

    model = ckpt.model.cpu().eval()
    x = test_input_from(model, test_image, options.test_size)
    y = _predict_test_output(ckpt, x)
    kwargs = _architecture_kwargs(ckpt.config)
    standalone = bmz_architecture.UNet(**kwargs)
    standalone.load_state_dict(model.state_dict())  # same keys: a mismatch raises here
    standalone.eval()
    f = _PackageFiles(
        folder=folder, test_input=folder / "test_input.npy", test_output=folder / "test_output.npy",
        state_dict=folder / "weights.pt", torchscript=folder / "weights_torchscript.pt",
        architecture=folder / "unet_architecture.py", arch_kwargs=kwargs,
        readme=folder / "README.md", cover=folder / "cover.png", input_rule=valid_size_rule(model),
    )
    np.save(f.test_input, x)
    np.save(f.test_output, y)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, f.state_dict)
    shutil.copyfile(bmz_architecture.__file__, f.architecture)
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; bioimage.io runs it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(standalone), str(f.torchscript))
    _write_cover(f.cover, x[0], y[0])
    f.readme.write_text(readme_text(ckpt, options, x.shape, y.shape), encoding="utf-8")
    return f


def _write_cover(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """A 2:1 PNG: the normalised test input beside its foreground probability (same size)."""
    import imageio.v3 as iio

    img = x[0]
    lo, hi = np.percentile(img, [1, 99.8])
    img = np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1)
    fg = 1.0 - y[0]  # every class but background
    b = (img.shape[0] - fg.shape[0]) // 2
    img = img[b : b + fg.shape[0], b : b + fg.shape[1]]  # 'valid' nets: the input's centre
    cover = np.concatenate([img, fg], axis=1)
    iio.imwrite(path, np.round(255 * np.clip(cover, 0, 1)).astype(np.uint8), extension=".png")


def readme_text(ckpt, options: BmzExportOptions, in_shape, out_shape) -> str:
    """The package's README: model, data contract, training recipe (from the checkpoint meta)."""
    cfg, meta = ckpt.config, ckpt.meta
    norm = cfg.normalization
    lines = [
        f"# {options.name or _default_name(ckpt)}", "",
        _default_description(ckpt), "",
        "Made with [napari-unet](https://pypi.org/project/napari-unet/) "
        f"{meta.get('napari_unet_version', '')}; it loads back there as a native model (fine-tuning).",
        "", "## Input and output", "",
        f"- input `raw`: (batch, channel, y, x) float32, {cfg.in_channels} channel(s), raw intensities; "
        f"normalised inside the package: {_norm_text(norm)}",
        f"- output `probabilities`: (batch, channel, y, x) float32 class probabilities "
        f"({', '.join(cfg.class_names)})",
    ]
    if ckpt.model.border:
        lines.append(
            f"- 'valid' network: the output is {2 * ckpt.model.border} pixels smaller than the input "
            "per axis; predict large images with overlapping tiles (mirror the image edges)"
        )
    lines += [f"- test tensors: input {tuple(in_shape)}, output {tuple(out_shape)}", "", "## Training", ""]
    lines += _training_lines(meta)
    lines += [
        "", "## Validation", "",
        "Validate on annotated images of your own: predict, threshold the foreground probability at "
        "0.5, split touching objects, and compare to ground truth (e.g. object-level F1 at IoU 0.5).",
    ]
    metrics = meta.get("metrics") or {}
    if metrics:
        lines += ["", "Metrics at the end of training:", ""]
        lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in sorted(metrics.items())]
    return "\n".join(lines) + "\n"


def _norm_text(norm) -> str:
    if norm.mode == "percentile":
        return f"percentiles {norm.low:g}-{norm.high:g} per channel mapped to 0-1"
    if norm.mode == "minmax":
        return "minimum-maximum per channel mapped to 0-1"
    return "none (the model reads the values as they are)"


def _training_lines(meta: dict[str, Any]) -> list[str]:
    """The training recipe of a checkpoint's provenance, as Markdown list items."""
    lines = []
    keys = ("created", "kind", "iterations", "best_step", "elapsed_s", "device", "init_from",
            "resumed_from", "torch_version", "n_parameters")
    for key in keys:
        if meta.get(key) not in (None, ""):
            lines.append(f"- {key.replace('_', ' ')}: {meta[key]}")
    train_cfg = meta.get("train_config")
    if isinstance(train_cfg, dict):
        recipe = {k: v for k, v in train_cfg.items() if k != "model"}
        lines += ["", "Training configuration (napari-unet TrainConfig):", "", "```json",
                  json.dumps(recipe, indent=2, sort_keys=True, default=str), "```"]
    for key in ("data", "validation"):
        if meta.get(key):
            lines += ["", f"Training data ({key}):", "", "```json",
                      json.dumps(meta[key], indent=2, sort_keys=True, default=str), "```"]
    return lines or ["- no training record in the checkpoint (not trained with napari-unet?)"]


def _default_name(ckpt) -> str:
    stem = ckpt.path.stem if ckpt.path is not None else "model"
    return f"napari-unet {stem}"


def _default_description(ckpt) -> str:
    c = ckpt.config
    return (
        f"2D U-Net (depth {c.depth}, {c.base_channels} base channels, {c.padding} convolutions"
        f"{', batch norm' if c.batch_norm else ''}) segmenting {', '.join(c.class_names[1:])} "
        f"from {c.in_channels}-channel images into {c.n_classes} class probabilities."
    )


def _identifier(text: str) -> str:
    """``text`` as a bioimage.io identifier (letters, digits, underscores; not starting with a digit)."""
    s = re.sub(r"\W+", "_", text.strip()).strip("_") or "class"
    return s if not s[0].isdigit() else f"c{s}"


def _preprocessing(norm) -> list:
    """The bioimage.io preprocessing equal to a :class:`NormalizationConfig` (after float32)."""
    from bioimageio.spec.model import v0_5 as s

    if norm.mode == "none":
        return []  # bioimage.io casts to the input's float32 anyway
    lo, hi = (norm.low, norm.high) if norm.mode == "percentile" else (0.0, 100.0)
    if hi <= 1.0:
        raise InputError(
            f"bioimage.io's scale_range needs an upper percentile above 1, the model uses {hi:g}"
        )
    axes = (s.AxisId("y"), s.AxisId("x"))  # per sample and channel, like the engine
    return [s.ScaleRangeDescr(kwargs=s.ScaleRangeKwargs(axes=axes, min_percentile=lo, max_percentile=hi))]


def _tensor_descrs(ckpt, f: _PackageFiles) -> tuple[list, list]:
    """Input and output tensor descriptions: axes, sizes, data types, test tensors."""
    from bioimageio.spec.model import v0_5 as s

    cfg, border = ckpt.config, int(ckpt.model.border)
    lo, step = f.input_rule
    space_in = [s.SpaceInputAxis(id=s.AxisId(a), size=s.ParameterizedSize(min=lo, step=step)) for a in "yx"]
    inp = s.InputTensorDescr(
        id=s.TensorId("raw"),
        description="raw image intensities (normalised by the preprocessing)",
        axes=[s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier(f"channel{i}") for i in range(cfg.in_channels)]), *space_in],
        test_tensor=s.FileDescr(source=f.test_input),
        data=s.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=_preprocessing(cfg.normalization),
    )
    # a 'valid' net crops its halo itself: the output is 2 * border smaller (spec: size offset);
    # a 'same' net's halo is left for the consumer to crop from each tile
    halo = output_halo(ckpt.model)
    space_out = []
    for a in "yx":
        size = s.SizeReference(tensor_id=s.TensorId("raw"), axis_id=s.AxisId(a), offset=-2 * border)
        space_out.append(
            s.SpaceOutputAxisWithHalo(id=s.AxisId(a), size=size, halo=halo) if halo
            else s.SpaceOutputAxis(id=s.AxisId(a), size=size)
        )
    names = [s.Identifier(_identifier(n)) for n in cfg.class_names]
    if len(set(names)) != len(names):
        names = [s.Identifier(f"class{i}") for i in range(cfg.n_classes)]
    out = s.OutputTensorDescr(
        id=s.TensorId("probabilities"),
        description="class probabilities (softmax over the channel axis)",
        axes=[s.BatchAxis(), s.ChannelAxis(channel_names=names), *space_out],
        test_tensor=s.FileDescr(source=f.test_output),
        data=s.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    return [inp], [out]


def _weights_descr(f: _PackageFiles):
    """``pytorch_state_dict`` (standalone architecture + kwargs) and TorchScript weights."""
    import torch
    from bioimageio.spec.model import v0_5 as s

    version = s.Version(torch.__version__.split("+")[0])
    arch = s.ArchitectureFromFileDescr(source=f.architecture, callable=s.Identifier("UNet"), kwargs=f.arch_kwargs)
    return s.WeightsDescr(
        pytorch_state_dict=s.PytorchStateDictWeightsDescr(source=f.state_dict, architecture=arch, pytorch_version=version),
        torchscript=s.TorchscriptWeightsDescr(
            source=f.torchscript, pytorch_version=version, parent="pytorch_state_dict",
            comment="torch.jit.script of the pytorch_state_dict architecture with these weights",
        ),
    )


def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy of provenance: non-finite floats become None, odd objects strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _license_id(name: str):
    """bioimage.io's ``LicenseId`` of an SPDX identifier, or :class:`InputError` naming examples."""
    from bioimageio.spec.model import v0_5 as s
    from pydantic import ValidationError

    try:
        return s.LicenseId(name)
    except ValidationError:
        raise InputError(
            f"unknown licence {name!r}; give an SPDX identifier such as CC-BY-4.0, CC0-1.0, MIT "
            "or BSD-3-Clause (https://spdx.org/licenses/)"
        ) from None


def _model_description(ckpt, f: _PackageFiles, options: BmzExportOptions):
    """The bioimage.io ``ModelDescr`` (spec 0.5) of a package; invalid fields raise InputError."""
    from bioimageio.spec.model import v0_5 as s
    from pydantic import ValidationError

    from .config import config_to_dict

    license_id = _license_id(options.license)
    inputs, outputs = _tensor_descrs(ckpt, f)
    ours = {
        "package_format_version": PACKAGE_FORMAT_VERSION,
        "model_config": config_to_dict(ckpt.config),
        "meta": _plain(ckpt.meta),
    }
    tags = [TAG, "unet", "u-net", "segmentation", "2d", "pytorch", *options.tags]
    try:
        return s.ModelDescr(
            name=options.name or _default_name(ckpt),
            description=options.description or _default_description(ckpt),
            authors=[s.Author(name=a) for a in options.authors],
            cite=[s.CiteEntry(text=t, doi=s.Doi(d)) for t, d in options.cite],
            license=license_id,
            tags=list(dict.fromkeys(tags)),
            documentation=s.FileDescr(source=f.readme),
            covers=[s.FileDescr(source=f.cover)],
            inputs=inputs,
            outputs=outputs,
            weights=_weights_descr(f),
            config=s.Config(bioimageio=s.BioimageioConfig(
                architecture_type="U-Net", task="segmentation",
                model_parameter_count=sum(p.numel() for p in ckpt.model.parameters()),
            ), **{CONFIG_KEY: ours}),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        log.debug("bioimage.io validation: %s", exc)
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg"))
        msg = msg if len(msg) <= 300 else msg[:300] + " ..."
        raise InputError(f"the bioimage.io description is invalid at {where or 'the top'}: {msg}") from None


# ------------------------------------------------------------------------------------ import
def is_bmz_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package (zip with an rdf.yaml) or a description YAML."""
    p = Path(path)
    if p.name in ("rdf.yaml", "bioimageio.yaml") or p.name.endswith(".bioimageio.yaml"):
        return p.is_file()
    if not (p.is_file() and zipfile.is_zipfile(p)):
        return False
    with zipfile.ZipFile(p) as zf:
        names = zf.namelist()
    return any(n in ("rdf.yaml", "bioimageio.yaml") or n.endswith(".bioimageio.yaml") for n in names)


def load_model_file(path: str | os.PathLike):
    """A checkpoint (``.pt``) or a bioimage.io package: :func:`load_bmz` or ``load_checkpoint``.

    Returns
    -------
    Checkpoint or BmzPredictor
    """
    if is_bmz_package(path):
        return load_bmz(path)
    from .checkpoint import load_checkpoint

    return load_checkpoint(path)


def load_bmz(path: str | os.PathLike):
    """Load a bioimage.io model package, natively when napari-unet made it.

    Parameters
    ----------
    path : path
        A package (``.zip``) or its description (``rdf.yaml``), on disk.

    Returns
    -------
    Checkpoint or BmzPredictor
        A package written by :func:`export_bmz`: a :class:`~unet_core.checkpoint.Checkpoint`
        whose ``model`` is a native :class:`~unet_core.models.SegmentationNet` (tiled
        prediction, fine-tuning; ``meta['bmz_package']`` names the package). Any other
        package: a :class:`BmzPredictor` running it through ``bioimageio.core``.

    Raises
    ------
    CheckpointError
        Not a (valid) model package, files that would have to be downloaded, only weight
        formats this machine cannot run (TensorFlow, Keras, ONNX ...), or axes other than 2D.
    InputError
        bioimageio.core is not installed.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file; check the path")
    if not is_bmz_package(p):
        raise CheckpointError(f"{p}: not a bioimage.io package (a .zip holding an rdf.yaml)")
    descr = _load_description(p)
    ours = _napari_unet_config(descr)
    if ours is not None:
        return _load_native(descr, ours, p)
    return BmzPredictor(descr, p)


def _load_description(p: Path):
    """The validated model description of a package (no downloads, no file hashing)."""
    spec = _bioimageio()
    from bioimageio.spec import InvalidDescr

    try:
        descr = spec.load_description(p, perform_io_checks=False, format_version="latest")
    except Exception as exc:  # noqa: BLE001 - broken zips, YAML errors, unknown formats
        raise CheckpointError(f"{p}: unreadable bioimage.io package ({type(exc).__name__}: {exc})") from None
    if isinstance(descr, InvalidDescr):
        errors = getattr(descr.validation_summary, "errors", None) or []
        first = f"{errors[0].loc}: {errors[0].msg}" if errors else "invalid description"
        raise CheckpointError(f"{p}: invalid bioimage.io description ({first})")
    if descr.type != "model":
        raise CheckpointError(f"{p}: a bioimage.io {descr.type!r}, not a model")
    return descr


def _napari_unet_config(descr) -> dict[str, Any] | None:
    """The ``config.napari_unet`` entry written by :func:`export_bmz`, or None."""
    config = getattr(descr, "config", None)
    extra = getattr(config, "model_extra", None) or {}
    ours = extra.get(CONFIG_KEY)
    if not isinstance(ours, dict) or TAG not in (descr.tags or ()):
        return None
    version = ours.get("package_format_version")
    if not isinstance(version, int) or version > PACKAGE_FORMAT_VERSION:
        raise CheckpointError(
            f"package written by a newer napari-unet (package format {version}); upgrade napari-unet"
        )
    return ours


def _remote(source) -> bool:
    return str(source).startswith(("http://", "https://"))


def _load_native(descr, ours: dict[str, Any], p: Path):
    """A :class:`Checkpoint` from a package written by :func:`export_bmz`."""
    import io

    import torch
    from bioimageio.spec.utils import get_reader

    from .checkpoint import Checkpoint
    from .config import ModelConfig, config_from_dict
    from .models import build_model

    entry = descr.weights.pytorch_state_dict
    if entry is None or _remote(entry.source):
        raise CheckpointError(f"{p}: the package has no local pytorch_state_dict weights to load natively")
    try:
        config = config_from_dict(ModelConfig, ours["model_config"])
        state = torch.load(io.BytesIO(get_reader(entry).read()), map_location="cpu", weights_only=True)
        model = build_model(config)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - damaged weights, keys, configs
        raise CheckpointError(f"{p}: damaged napari-unet package ({type(exc).__name__}: {exc})") from None
    model.eval()
    meta = dict(ours.get("meta") or {})
    meta["bmz_package"] = str(p)
    return Checkpoint(model=model, config=config, meta=meta, train_state=None, path=p)


def runnable_weights(descr) -> str:
    """The weight format :class:`BmzPredictor` will run, or raise :class:`CheckpointError`.

    A format counts when this machine runs it (torch: ``pytorch_state_dict`` with an
    architecture shipped in the package or importable here, or ``torchscript``) and its files
    lie in the package (nothing is downloaded).
    """
    import importlib.util

    present = [name for name, entry in descr.weights if entry is not None]
    reasons = []
    for name in SUPPORTED_WEIGHTS:
        entry = getattr(descr.weights, name, None)
        if entry is None:
            continue
        arch = getattr(entry, "architecture", None)
        if _remote(entry.source) or (arch is not None and _remote(getattr(arch, "source", ""))):
            reasons.append(f"{name} would be downloaded from {entry.source}")
            continue
        lib = getattr(arch, "import_from", None)
        if lib and importlib.util.find_spec(lib.split(".")[0]) is None:
            reasons.append(f"{name} needs the Python package {lib.split('.')[0]!r}")
            continue
        return name
    if reasons:
        raise CheckpointError(
            f"cannot run this package offline: {'; '.join(reasons)}; download the full package "
            "(zip with its weights) or install what it needs"
        )
    raise CheckpointError(
        f"the package has only {', '.join(present) or 'no'} weights; napari-unet runs "
        f"{' or '.join(SUPPORTED_WEIGHTS)} weights (convert the model, e.g. with bioimageio.core)"
    )


class BmzPredictor:
    """A foreign bioimage.io model run through ``bioimageio.core`` (prediction only, 2D).

    Parameters
    ----------
    descr : bioimageio ModelDescr
        A loaded description (see :func:`load_bmz`) with one 2D input (axes among batch,
        channel, y, x) and a first output with y and x axes.
    path : Path
        Where it came from.

    Attributes
    ----------
    name : str
    weight_format : str
        The format that runs (see :func:`runnable_weights`).
    in_channels : int
        Channels the input reads (1 without a channel axis).
    """

    def __init__(self, descr, path: Path) -> None:
        self.descr, self.path = descr, path
        self.name = descr.name
        self.weight_format = runnable_weights(descr)
        if len(descr.inputs) != 1:
            raise CheckpointError(f"{path}: the model has {len(descr.inputs)} inputs; napari-unet gives one image")
        self._in, self._out = descr.inputs[0], descr.outputs[0]
        ins = [a.type if a.type in ("batch", "channel") else str(a.id) for a in self._in.axes]
        outs = [a.type if a.type in ("batch", "channel") else str(a.id) for a in self._out.axes]
        if not set(ins) <= {"batch", "channel", "y", "x"} or not {"y", "x"} <= set(ins) or not {"y", "x"} <= set(outs):
            raise CheckpointError(
                f"{path}: input axes {ins}, output axes {outs}; napari-unet runs 2D models "
                "(axes among batch, channel, y, x)"
            )
        self._in_axes, self._out_axes = ins, outs
        ch = [a for a in self._in.axes if a.type == "channel"]
        self.in_channels = int(ch[0].size) if ch else 1
        halos = {str(a.id): int(getattr(a, "halo", 0) or 0) for a in self._out.axes}
        self._halo = (halos["y"], halos["x"])
        self._pipeline = None

    def _pipeline_for_cpu(self):
        if self._pipeline is None:
            from bioimageio.core import create_prediction_pipeline

            self._pipeline = create_prediction_pipeline(self.descr, weights_format=self.weight_format, devices=["cpu"])
        return self._pipeline

    def predict(self, image: np.ndarray, *, channel_axis: int | None = None) -> np.ndarray:
        """Probabilities of an image; see :meth:`iter_predict` (this drains it)."""
        from .progress import run_to_end

        return run_to_end(self.iter_predict(image, channel_axis=channel_axis))

    def iter_predict(
        self, image: np.ndarray, *, channel_axis: int | None = None
    ) -> Generator[Progress, None, np.ndarray]:
        """Predict a 2D image ``(Y, X)`` / ``(C, Y, X)``, or a stack slice by slice, yielding progress.

        Each slice runs in one pass (mirror-padded to the model's next valid size, cropped
        back), so memory grows with the image.

        Parameters
        ----------
        image : ndarray
            ``(Y, X)``, ``(C, Y, X)`` with ``channel_axis``, ``(Z, Y, X)`` or ``(Z, C, Y, X)``.
        channel_axis : int or None

        Yields
        ------
        Progress
            ``stage='predict'``, one record per slice.

        Returns
        -------
        ndarray of float32
            ``(K, Y, X)`` (``(Z, K, Y, X)`` for stacks): the model's first output. A
            single-channel output p is read as the foreground probability: ``[1 - p, p]``.
        """
        from .arrays import as_channel_stack
        from .progress import Progress

        stack, single = as_channel_stack(np.asarray(image), channel_axis, self.in_channels)
        out = []
        for z, slab in enumerate(stack):
            out.append(self._predict_slice(slab))
            yield Progress("predict", z + 1, len(stack), f"slice {z + 1}/{len(stack)} ({self.name})")
        out = np.stack(out)
        return out[0] if single else out

    def _predict_slice(self, slab: np.ndarray) -> np.ndarray:
        """``(K, Y, X)`` for one ``(C, Y, X)`` slice: mirror-padded to a valid size, cropped back."""
        from bioimageio.core import Sample, Tensor

        h, w = slab.shape[-2:]
        hy, hx = self._halo
        (ny, nx), (oy, ox) = self._valid_shape(h + 2 * hy, w + 2 * hx)
        # per side: the context the model crops itself, plus the output halo we crop
        py, px = (ny - oy) // 2 + hy, (nx - ox) // 2 + hx
        x = np.pad(slab, ((0, 0), (py, ny - h - py), (px, nx - w - px)), mode="symmetric")
        x = x.astype(np.float32)
        arr = x if "channel" in self._in_axes else x[0]
        if "batch" in self._in_axes:
            arr = arr[None]
        order = [a for a in ("batch", "channel", "y", "x") if a in self._in_axes]
        arr = np.transpose(arr, [order.index(a) for a in self._in_axes])
        tid = self._in.id
        sample = Sample(members={tid: Tensor(arr, dims=tuple(self._axis_ids(self._in)))}, stat={}, id="napari-unet")
        result = self._pipeline_for_cpu().predict_sample_without_blocking(
            sample, skip_input_padding=True, skip_output_cropping=True  # padded and cropped here
        )
        y = np.asarray(result.members[self._out.id].data, dtype=np.float32)
        y = np.moveaxis(y, [self._out_axes.index(a) for a in ("y", "x")], [-2, -1])
        y = y.reshape(-1, *y.shape[-2:])[:, hy : hy + h, hx : hx + w]
        return np.stack([1.0 - y[0], y[0]]) if y.shape[0] == 1 else y

    @staticmethod
    def _axis_ids(tensor) -> list[str]:
        return [str(a.id) for a in tensor.axes]

    def _valid_shape(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The smallest valid input ``(y, x)`` whose output covers ``(h, w)``, and that output."""
        from bioimageio.spec.model.v0_5 import AxisId, ParameterizedSize

        yx = (AxisId("y"), AxisId("x"))
        ns = {(self._in.id, a.id): 0 for a in self._in.axes if isinstance(a.size, ParameterizedSize)}
        while True:
            sizes = self.descr.get_axis_sizes(ns, batch_size=1)
            ins = tuple(int(sizes.inputs[(self._in.id, a)]) for a in yx)
            outs = tuple(int(sizes.outputs[(self._out.id, a)]) for a in yx)
            short = [a for a, o, n in zip(yx, outs, (h, w)) if o < n]
            if not short:
                return ins, outs
            grow = [k for k in ns if k[1] in short]
            if not grow:
                raise InputError(
                    f"the image ({h}x{w}) is larger than this model's fixed input {ins}; crop it"
                )
            for k in grow:
                ns[k] += 1
