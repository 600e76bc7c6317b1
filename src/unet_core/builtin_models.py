"""Built-in starting models shipped inside the package (no download at run time).

Each is an ordinary napari-unet checkpoint (``unet_core/builtin/<name>.pt``, loaded with
:func:`unet_core.checkpoint.load_checkpoint`) whose ``meta`` holds the training recipe, data
provenance and measured quality. They are trained by ``scripts/train_builtin_models.py`` and
described in ``docs/models/<name>.md``.

Wherever a checkpoint path is accepted, a built-in name is accepted too:
:func:`resolve_model_source` turns either into a file path. This module does not import torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import CheckpointError, InputError

#: folder of the shipped checkpoint files
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships with the package.

    Attributes
    ----------
    name : str
        What users type (``napari-unet predict nuclei img.tif``).
    description : str
        What images it is for, one line.
    file : str
        Checkpoint file name inside :data:`BUILTIN_DIR`.
    channels : int
        Image channels it reads.
    kind : {'nuclei', 'membranes'}
        What the objects are: bright blobs on a dark background (touching ones split by a
        distance watershed), or cells separated by predicted membranes (connected components).
    """

    name: str
    description: str
    file: str
    channels: int
    kind: Literal["nuclei", "membranes"]

    @property
    def split_touching(self) -> bool:
        """Whether instance post-processing should split touching objects (nuclei: yes; cells
        already separated by membranes: no, a watershed would cut large cells)."""
        return self.kind == "nuclei"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "nuclei",
            "fluorescent nuclei (DAPI/Hoechst-like widefield), objects = nuclei",
            "nuclei.pt",
            1,
            "nuclei",
        ),
        BuiltinModel(
            "membranes",
            "cells outlined by membranes (EM or membrane stain), objects = cells",
            "membranes.pt",
            1,
            "membranes",
        ),
    )
}


def list_builtin_models() -> list[BuiltinModel]:
    """The built-in models, in a stable order."""
    return list(BUILTIN_MODELS.values())


def _known() -> str:
    return ", ".join(BUILTIN_MODELS)


def builtin_model_path(name: str) -> Path:
    """The checkpoint file of built-in model ``name``.

    Raises
    ------
    InputError
        ``name`` is not a built-in model (the message lists the known names).
    CheckpointError
        The file is missing from this installation.
    """
    model = BUILTIN_MODELS.get(name)
    if model is None:
        raise InputError(f"{name!r} is not a built-in model; built-in models: {_known()}")
    path = BUILTIN_DIR / model.file
    if not path.is_file():
        raise CheckpointError(
            f"built-in model {name!r}: {path} is missing from this installation; reinstall "
            "napari-unet, or retrain it with scripts/train_builtin_models.py"
        )
    return path


def resolve_model_source(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint file from a built-in model name or a checkpoint path.

    An existing file wins over a built-in name (a file called ``nuclei`` in the working folder
    is used as given); otherwise a built-in name gives its shipped file.

    Parameters
    ----------
    name_or_path : str or path
        ``'nuclei'``, ``'membranes'`` or the path of a checkpoint file.

    Returns
    -------
    Path
        The checkpoint file to pass to :func:`unet_core.checkpoint.load_checkpoint`.

    Raises
    ------
    InputError
        Neither an existing file nor a built-in name (the message lists the built-in names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_MODELS:
        return builtin_model_path(name_or_path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a checkpoint file or a built-in model ({_known()})")
    raise InputError(
        f"{str(name_or_path)!r} is neither an existing checkpoint file nor a built-in model; "
        f"check the path, or use a built-in model: {_known()} (see 'napari-unet models')"
    )
