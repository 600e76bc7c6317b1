"""A Qt form generated from an engine config dataclass, so the GUI never copies a default.

The form reads the fields, types, defaults and (numpydoc ``Attributes``) descriptions of a frozen
config dataclass such as :class:`unet_core.config.TrainConfig`, makes one editor per simple field
(field with choices -> combo box, bool -> check box, int -> spin box, float -> spin box,
optional number -> spin box whose minimum means "none") and returns an updated instance with
:meth:`ConfigForm.value`. New engine options appear in the GUI without a GUI change. Choices and
descriptions come from :func:`unet_core.config.field_choices` / :func:`~unet_core.config.field_docs`
(the fields' ``Literal`` types, or the registries of architectures, losses and devices): the same
source the command line reads.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from unet_core.config import choices_are_open, field_choices, field_docs

from ._help import field_help

__all__ = ["BASIC_FIELDS", "TRISTATE", "ConfigForm", "field_docs"]

#: The one place that says which options a form shows at first, per config class (by name): the
#: other fields go into a folded "Advanced" section. Classes not listed show every field.
BASIC_FIELDS: dict[str, tuple[str, ...]] = {
    "TrainConfig": ("iterations", "time_limit", "learning_rate", "augment", "device"),
    "ModelConfig": ("arch", "depth", "base_channels"),
    "WeightMapConfig": ("w0", "sigma"),
    "PostprocessConfig": ("threshold", "split_touching", "min_size"),
}


def _is_optional_number(tp: Any) -> bool:
    args = typing.get_args(tp)
    return type(None) in args and any(a in (int, float) for a in args)


def _is_optional_bool(tp: Any) -> bool:
    args = typing.get_args(tp)
    return type(None) in args and bool in args


def _edited_signal(editor: QWidget):
    """The signal an editor emits when its value changes."""
    if isinstance(editor, QCheckBox):
        return editor.toggled
    if isinstance(editor, QComboBox):
        return editor.currentTextChanged
    if isinstance(editor, QLineEdit):
        return editor.textChanged
    return editor.valueChanged


#: texts of an optional bool (None = let the engine decide)
TRISTATE = {"auto": None, "on": True, "off": False}


class ConfigForm(QWidget):
    """Editors for the simple fields of a config dataclass instance.

    Parameters
    ----------
    config : dataclass instance
        Supplies the field types and the initial values (normally the engine defaults).
    fields : sequence of str, optional
        Which fields to show, in order (default: every simple field).
    exclude : sequence of str
        Fields not to show (nested configs are never shown).
    labels : dict, optional
        Display labels per field (default: the field name in words).
    basic : sequence of str, optional
        Fields shown at first; the others go into a folded "Advanced" section (default:
        :data:`BASIC_FIELDS` of the config class; when none of the shown fields is basic, all
        are shown flat).

    Attributes
    ----------
    advanced : Collapsible or None
        The folded section of the non-basic fields.
    """

    #: emitted whenever an editor's value changes (by the user or by :meth:`set`)
    changed = Signal()

    def __init__(
        self,
        config: Any,
        *,
        fields: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        labels: dict[str, str] | None = None,
        basic: Sequence[str] | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self._config = config
        self._types = typing.get_type_hints(type(config))
        docs = field_docs(type(config))
        self._docs = docs
        self._choice_types: dict[str, type] = {}
        names = [f.name for f in dataclasses.fields(config)]
        if fields is not None:
            names = [n for n in fields if n in names]
        self.editors: dict[str, QWidget] = {}
        for name in names:
            editor = None if name in exclude else self._make_editor(name, getattr(config, name))
            if editor is None:
                continue
            editor.setToolTip(field_help(type(config), name))
            editor.setObjectName(name)
            _edited_signal(editor).connect(self._emit_changed)
            self.editors[name] = editor
        self._lay_out(basic, labels or {})

    def _lay_out(self, basic: Sequence[str] | None, labels: dict[str, str]) -> None:
        """Rows of the basic fields, then the others in a folded "Advanced" section."""
        from ._dock import Collapsible

        basic = BASIC_FIELDS.get(type(self._config).__name__) if basic is None else basic
        if basic is None or not set(basic) & set(self.editors):
            basic = tuple(self.editors)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        main, extra = QFormLayout(), QFormLayout()
        layout.addLayout(main)
        for name, editor in self.editors.items():
            text = labels.get(name, name.replace("_", " "))
            (main if name in basic else extra).addRow(text, editor)
        self.advanced = None
        if extra.rowCount():
            content = QWidget()
            content.setLayout(extra)
            extra.setContentsMargins(12, 0, 0, 0)
            self.advanced = Collapsible("Advanced", content, expanded=False)
            layout.addWidget(self.advanced)

    def _emit_changed(self, *_) -> None:
        self.changed.emit()

    # -- building ------------------------------------------------------------------------------
    def _make_editor(self, name: str, value: Any) -> QWidget | None:
        tp = self._types.get(name)
        if dataclasses.is_dataclass(value) or isinstance(value, tuple | list | dict):
            return None
        choices = field_choices(type(self._config), name)
        if choices:
            return self._choice_editor(name, value, choices)
        if isinstance(value, bool) and not _is_optional_bool(tp):
            box = QCheckBox()
            box.setChecked(value)
            return box
        if _is_optional_bool(tp):
            combo = QComboBox()
            combo.addItems(list(TRISTATE))
            combo.setCurrentText(next(k for k, v in TRISTATE.items() if v is value))
            return combo
        if _is_optional_number(tp):
            return self._optional_number_editor(name, value, tp)
        if isinstance(value, int):
            spin = QSpinBox()
            spin.setRange(0 if value >= 0 else -(2**31), 2**31 - 1)
            spin.setValue(value)
            return spin
        if isinstance(value, float):
            spin = QDoubleSpinBox()
            decimals = 6 if 0 < abs(value) < 0.01 else 3
            spin.setDecimals(decimals)
            spin.setRange(-1e9 if value < 0 else 0.0, 1e9)
            spin.setSingleStep(10 ** -(decimals - 1) if value and abs(value) < 1 else 1.0)
            spin.setValue(value)
            return spin
        if isinstance(value, str):
            return QLineEdit(value)
        return None

    def _choice_editor(self, name: str, value: Any, choices: tuple[Any, ...]) -> QComboBox:
        combo = QComboBox()
        combo.setEditable(choices_are_open(type(self._config), name))  # losses combine: 'wce+0.5*dice'
        combo.addItems([str(c) for c in choices])
        self._choice_types[name] = type(choices[0])
        if combo.findText(str(value)) < 0:
            combo.addItem(str(value))
        combo.setCurrentText(str(value))
        return combo

    def _optional_number_editor(self, name: str, value: Any, tp: Any) -> QWidget:
        doc = self._docs.get(name, "").lower()
        integer = int in typing.get_args(tp) and float not in typing.get_args(tp)
        spin = QSpinBox() if integer else QDoubleSpinBox()
        spin.setRange(0, 2**31 - 1) if integer else spin.setRange(0.0, 1e9)
        if not integer:
            spin.setDecimals(1)
        # the minimum means None: "auto" where the engine then chooses, else "none"
        spin.setSpecialValueText("auto" if ("auto" in doc or "per device" in doc) else "none")
        spin.setValue(0 if value is None else value)
        return spin

    # -- reading / writing ---------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The edited value of field ``name``."""
        editor = self.editors[name]
        tp = self._types.get(name)
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            if _is_optional_bool(tp):
                return TRISTATE[editor.currentText()]
            return self._choice_types.get(name, str)(editor.currentText())
        if isinstance(editor, QLineEdit):
            return editor.text()
        if _is_optional_number(tp):
            v = editor.value()
            if v <= editor.minimum():
                return None
            return int(v) if isinstance(editor, QSpinBox) else float(v)
        value = editor.value()
        return int(value) if isinstance(editor, QSpinBox) else float(value)

    def set(self, name: str, value: Any) -> None:
        """Set the editor of field ``name`` to ``value``."""
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox) and _is_optional_bool(self._types.get(name)):
            editor.setCurrentText(next(k for k, v in TRISTATE.items() if v is value))
        elif isinstance(editor, QComboBox):
            if editor.findText(str(value)) < 0:
                editor.addItem(str(value))
            editor.setCurrentText(str(value))
        elif isinstance(editor, QLineEdit):
            editor.setText(str(value))
        else:
            editor.setValue(editor.minimum() if value is None else value)

    def value(self, base: Any | None = None) -> Any:
        """``base`` (default: the initial config) with the edited fields replaced."""
        base = self._config if base is None else base
        changes = {}
        for name in self.editors:
            v = self.get(name)
            if isinstance(v, float) and math.isnan(v):
                continue
            changes[name] = v
        return dataclasses.replace(base, **changes)
