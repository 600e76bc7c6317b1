"""Where a model comes from: a checkpoint file, a built-in model name, or a bioimage.io package.

Every command and widget that accepts a model goes through :func:`load_model` (prediction) or
:func:`load_trainable` (a starting point for fine-tuning), so a built-in name (``nuclei``) and a
package (``model.zip``) are accepted wherever a checkpoint path is.
"""

from __future__ import annotations

import os
from typing import Any

from .builtin_models import list_builtin_models, resolve_model_source
from .errors import InputError


def load_model(source: str | os.PathLike) -> Any:
    """The model behind ``source``, ready to predict.

    Parameters
    ----------
    source : str or path
        A checkpoint file (``.pt``), a built-in model name (see ``napari-unet models``), or a
        bioimage.io package (``.zip`` / ``rdf.yaml``).

    Returns
    -------
    Checkpoint or BmzPredictor
        A :class:`~unet_core.checkpoint.Checkpoint` for the project's own models (including
        packages it exported); a :class:`~unet_core.bmz.BmzPredictor` for other packages.

    Raises
    ------
    InputError
        Neither a file nor a built-in name (the message lists the built-in names).
    CheckpointError
        A file that is not a napari-unet checkpoint or a usable package.
    """
    from .bmz import load_model_file

    return load_model_file(resolve_model_source(source))


def load_trainable(source: str | os.PathLike):
    """Like :func:`load_model`, but only models this project can fine-tune (a ``Checkpoint``)."""
    from .checkpoint import Checkpoint

    loaded = load_model(source)
    if not isinstance(loaded, Checkpoint):
        names = ", ".join(m.name for m in list_builtin_models())
        raise InputError(
            f"{source}: this bioimage.io model was not made by napari-unet; it can predict but not be "
            f"fine-tuned here. Start from a napari-unet checkpoint, a built-in model ({names}) or a "
            "package exported with 'napari-unet export-bmz'"
        )
    return loaded
