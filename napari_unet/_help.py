"""Help for the docks: short plain-text tooltips and the user guide, offline.

Tooltips of config fields come from the numpydoc ``Attributes`` descriptions of the engine's
config dataclasses (:func:`unet_core.config.field_docs`), cleaned of reST markup and cut to one or
two sentences by :func:`clean_doc`; :data:`HELP_OVERRIDES` holds hand-written text where the
description is long or technical. Each dock's **Help** button shows its section of the user guide
(``docs/user-guide.md``) read from the local file, so help works without a network.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from unet_core.config import field_docs

#: longest tooltip, in characters (longer text is cut at a sentence end)
MAX_TOOLTIP = 240

#: hand-written help where the engine's description is long: (config class name, field) -> text
HELP_OVERRIDES: dict[tuple[str, str], str] = {
    ("ModelConfig", "arch"): "Network architecture. 'unet' is the classic U-Net; others trade "
    "speed for context.",
    ("ModelConfig", "padding"): "'valid': unpadded convolutions as in the U-Net paper (no border "
    "artifacts); 'same': output the size of the input.",
    ("ModelConfig", "up_mode"): "'transpose': 2x2 up-convolution as in the paper; 'bilinear': "
    "smoother, without checkerboard artifacts.",
    ("ModelConfig", "width"): "Channel-width multiplier of the FCN and DeepLabv3+ networks; "
    "0.25 suits a CPU.",
    ("TrainConfig", "time_limit"): "Stop training cleanly after this many seconds (none = run "
    "all iterations).",
    ("TrainConfig", "time_clock"): "What the time limit measures: wall-clock time or the CPU "
    "time of the training.",
    ("TrainConfig", "batch_size"): "Tiles per training step; auto picks a size that suits the "
    "device.",
    ("TrainConfig", "tile_size"): "Edge of a training tile in pixels; auto picks a size that "
    "suits the device.",
    ("TrainConfig", "loss"): "Training loss: 'wce' (weighted cross-entropy, the U-Net paper), "
    "'dice', or a sum such as 'wce+dice'.",
    ("TrainConfig", "semantic"): "The labels are class ids (0 = background, 1, 2, ... classes) "
    "instead of one id per object.",
    ("TrainConfig", "val_fraction"): "Fraction of the annotated slices kept aside to measure "
    "the model while it trains; 0 turns validation off.",
    ("TrainConfig", "region_margin"): "Without a region layer, training uses the box around the "
    "painted objects grown by this many pixels.",
    ("TrainConfig", "amp"): "Mixed precision (faster on a GPU); auto = on for CUDA only.",
    ("AugmentConfig", "elastic_sigma"): "Strength in pixels of the random elastic deformation "
    "(paper: 10); 0 turns it off.",
    ("AugmentConfig", "elastic_grid"): "Points per side of the grid of random displacements "
    "(paper: 3).",
    ("PostprocessConfig", "threshold"): "Pixels whose foreground probability exceeds this are "
    "foreground.",
}

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|ref|doc|term):`~?([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_SINGLE = re.compile(r"`([^`]*)`")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z('\"0-9])")


def clean_doc(text: str, max_chars: int = MAX_TOOLTIP, sentences: int = 2) -> str:
    """``text`` as plain help: reST markup removed, at most ``sentences`` sentences.

    Parameters
    ----------
    text : str
        A numpydoc description, possibly with ``literals``, :func:`roles` and emphasis.
    max_chars : int
        Longest result; text beyond it is cut at a sentence end (or a word, with "...").
    sentences : int
        Most sentences kept.

    Returns
    -------
    str
        Plain text without backquotes or roles.
    """
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1], text)
    text = _LITERAL.sub(r"\1", text)
    text = _SINGLE.sub(r"\1", text)
    text = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    parts = _SENTENCE_END.split(text)
    out = " ".join(parts[:sentences])
    while len(out) > max_chars and len(parts) > 1 and sentences > 1:
        sentences -= 1
        out = " ".join(parts[:sentences])
    if len(out) > max_chars:
        out = out[: max_chars - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."
    return out


def field_help(cls: type, name: str) -> str:
    """Short plain help of field ``name`` of config dataclass ``cls`` (the override, if any)."""
    override = HELP_OVERRIDES.get((cls.__name__, name))
    if override is not None:
        return override
    return clean_doc(field_docs(cls).get(name, ""))


# -- the user guide ------------------------------------------------------------------------------
def user_guide_path() -> Path | None:
    """The local user guide: in the source checkout, or installed with the package (setup.cfg
    ``data_files``: ``<prefix>/share/napari-unet/docs``); None if absent."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "docs", Path(sys.prefix) / "share" / "napari-unet" / "docs"]
    for folder in candidates:
        if (folder / "user-guide.md").is_file():
            return folder / "user-guide.md"
    return None


def guide_section(title: str, path: Path | None = None) -> str:
    """The Markdown of the user-guide section whose ``##`` heading contains ``title``.

    Parameters
    ----------
    title : str
        Words of the heading, e.g. ``"Train"`` for ``## 3. Train`` (case-insensitive; a heading
        that starts with them, after its number, is preferred).
    path : Path, optional
        The guide (default: :func:`user_guide_path`).

    Returns
    -------
    str
        The heading and its text up to the next ``##`` heading; "" when the guide or the
        section is missing.
    """
    path = path or user_guide_path()
    if path is None:
        return ""
    sections = re.split(r"(?m)^(?=## )", path.read_text(encoding="utf-8"))
    heads = [(s.splitlines()[0][3:].strip().lower(), s) for s in sections if s.startswith("## ")]
    want = title.lower()
    for head, text in heads:
        if re.sub(r"^[\d.\s]+", "", head).startswith(want):
            return text.strip()
    return next((text.strip() for head, text in heads if want in head), "")


def show_guide(title: str, parent=None):
    """Show the user-guide section ``title`` in a window (images from the local docs folder).

    Returns
    -------
    QDialog
        The (non-modal) window, already shown.
    """
    from qtpy.QtWidgets import QDialog, QTextBrowser, QVBoxLayout

    path = user_guide_path()
    text = guide_section(title, path)
    if not text:
        text = (f"The user guide section '{title}' is not installed here. It is "
                "docs/user-guide.md in the napari-unet source.")
    dialog = QDialog(parent)
    dialog.setWindowTitle(f"napari-unet help: {title}")
    browser = QTextBrowser(dialog)
    browser.setOpenExternalLinks(True)
    if path is not None:
        browser.setSearchPaths([str(path.parent)])
    browser.setMarkdown(text)
    QVBoxLayout(dialog).addWidget(browser)
    dialog.resize(560, 520)
    dialog.show()
    return dialog
