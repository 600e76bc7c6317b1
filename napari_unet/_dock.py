"""Make a dock widget fit a laptop screen and behave: one call, :func:`fit_dock`, per dock.

napari stacks plugin docks in one column; five tall forms need a window far taller than a
1366x768 or 1600x1000 screen, and rows overlap and clip. :func:`fit_dock`, called as the last
line of a dock's ``__init__``:

- moves the dock's whole layout into one vertical :class:`QScrollArea` (a scroll area the dock
  made itself is dissolved into it), so the dock can shrink to :data:`MIN_DOCK_HEIGHT` and every
  row stays reachable;
- aligns the rows at the top (no stretch between them), so a status label that wraps below the
  buttons never moves them;
- makes every group box foldable (a header with an arrow), folding those named in ``folded``;
- lets combo and spin boxes take the mouse wheel only when they have the keyboard focus
  (:func:`guard_wheel`): the wheel scrolls the dock instead of changing a choice in passing;
- cleans every tooltip to short plain text (:func:`napari_unet._help.clean_doc`) and adds a
  **Help** button showing the dock's section of the user guide.
"""

from __future__ import annotations

from collections.abc import Iterable

from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLayout,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._help import clean_doc, show_guide

__all__ = ["MIN_DOCK_HEIGHT", "Collapsible", "fit_dock", "guard_wheel", "make_collapsible"]

#: smallest height of a dock's scrolling content, pixels (five docks fit a 768 px screen)
MIN_DOCK_HEIGHT = 60


class _WheelGuard(QObject):
    """Event filter: an unfocused combo/spin box passes wheel events to the scroll area around it."""

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt API)
        if event.type() != QEvent.Wheel or not isinstance(obj, QWidget) or obj.hasFocus():
            return False
        area = obj.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.verticalScrollBar(), event)
        else:
            event.ignore()  # Qt offers it to the parents
        return True


class _Content(QWidget):
    """Scrolled content that is never squeezed below its preferred height.

    A scroll area gives its widget only the minimum height; rows would then shrink and grow
    whenever another row (a wrapping status label) changes, moving the buttons. Here the
    minimum is the preferred height, so rows keep their size and the rest scrolls.
    """

    def minimumSizeHint(self):  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        hint.setHeight(max(hint.height(), self.sizeHint().height()))
        return hint


_GUARD: _WheelGuard | None = None


def guard_wheel(root: QWidget) -> int:
    """Make the combo and spin boxes under ``root`` take wheel events only when focused.

    Returns
    -------
    int
        How many editors were guarded.
    """
    global _GUARD
    if _GUARD is None:
        _GUARD = _WheelGuard()
    editors = [*root.findChildren(QComboBox), *root.findChildren(QAbstractSpinBox)]
    for editor in editors:
        editor.setFocusPolicy(Qt.StrongFocus)
        editor.removeEventFilter(_GUARD)
        editor.installEventFilter(_GUARD)
    return len(editors)


def _header(title: str, expanded: bool) -> QToolButton:
    button = QToolButton()
    button.setText(title)
    button.setCheckable(True)
    button.setChecked(expanded)
    button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
    button.setAutoRaise(True)
    button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
    button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
    return button


class Collapsible(QWidget):
    """A titled section whose content folds away under a header button.

    Parameters
    ----------
    title : str
        Header text.
    content : QWidget
        What folds.
    expanded : bool
        Shown at first (default: folded).
    """

    #: emitted with the new state when the section is opened (True) or folded (False)
    toggled = Signal(bool)

    def __init__(self, title: str, content: QWidget, expanded: bool = False,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.header = _header(title, expanded)
        self.content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(content)
        content.setVisible(expanded)
        self.header.toggled.connect(self.set_expanded)

    def is_expanded(self) -> bool:
        """True when the content is shown."""
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Show (True) or fold (False) the content."""
        self.header.blockSignals(True)
        self.header.setChecked(expanded)
        self.header.blockSignals(False)
        self.header.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.content.setVisible(expanded)
        self.toggled.emit(expanded)


def make_collapsible(box: QGroupBox, expanded: bool = True) -> Collapsible:
    """Make group box ``box`` foldable in place: its title becomes a header button.

    The box object stays (code holding it keeps working); its layout moves into a
    :class:`Collapsible` inside it.
    """
    inner = box.layout()
    content = QWidget()
    if inner is not None:
        content.setLayout(inner)  # takes the layout and its widgets from the box
    section = Collapsible(box.title(), content, expanded)
    section.setToolTip(box.toolTip())
    box.setTitle("")
    box.setStyleSheet("QGroupBox { margin-top: 0px; padding-top: 0px; }")  # no empty title row
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 2, 4, 2)
    layout.addWidget(section)
    box.setProperty("collapsible", section)
    return section


def _dissolve_scroll_areas(layout: QLayout) -> None:
    """Replace each widget-resizable scroll area directly in ``layout`` by its content."""
    for i in range(layout.count()):
        scroll = layout.itemAt(i).widget()
        if isinstance(scroll, QScrollArea) and scroll.widgetResizable() and scroll.widget():
            content = scroll.takeWidget()
            layout.replaceWidget(scroll, content)
            scroll.hide()
            scroll.deleteLater()


def _align_top(layout: QLayout) -> None:
    """Rows at their natural height, spare space at the bottom (wrapping text moves nothing up)."""
    if isinstance(layout, QVBoxLayout):
        for i in range(layout.count()):
            layout.setStretch(i, 0)
        layout.addStretch(1)


def _plain_tooltips(root: QWidget) -> None:
    for child in [root, *root.findChildren(QWidget)]:
        tip = child.toolTip()
        if tip and not tip.lstrip().startswith("<"):  # leave rich text as written
            child.setToolTip(clean_doc(tip, sentences=3))


def _help_row(widget: QWidget, guide: str) -> QHBoxLayout:
    button = QToolButton()
    button.setText("Help")
    button.setObjectName("help_button")
    button.setToolTip(f"Show the user guide's section '{guide}' (from the local docs).")
    button.setAutoRaise(True)
    button.clicked.connect(lambda: setattr(widget, "help_dialog", show_guide(guide, widget)))
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    row.addStretch(1)
    row.addWidget(button)
    widget.help_button = button
    return row


def fit_dock(widget: QWidget, *, guide: str | None = None, folded: Iterable[str] = ()) -> QScrollArea:
    """Put the content of dock ``widget`` in a scroll area, foldable and wheel-safe.

    Parameters
    ----------
    widget : QWidget
        A dock widget whose ``__init__`` has built its layout.
    guide : str, optional
        Heading words of the dock's user-guide section (adds a **Help** button).
    folded : iterable of str
        Titles of group boxes folded at first (the other group boxes start open).

    Returns
    -------
    QScrollArea
        The scroll area (also ``widget.dock_scroll``); its widget holds the former layout.
    """
    content = _Content()
    content.setObjectName("dock_content")
    old = widget.layout()
    if old is not None:
        content.setLayout(old)  # takes the layout and its widgets from the dock
        _dissolve_scroll_areas(old)
        _align_top(old)
    folded = set(folded)
    for box in content.findChildren(QGroupBox):
        if box.title():
            make_collapsible(box, expanded=box.title() not in folded)
    scroll = QScrollArea()
    scroll.setObjectName("dock_scroll")
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
    scroll.setMinimumHeight(MIN_DOCK_HEIGHT)
    scroll.setWidget(content)
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    if guide:
        layout.addLayout(_help_row(widget, guide))
    layout.addWidget(scroll, 1)
    widget.setMinimumHeight(0)
    widget.dock_scroll = scroll
    guard_wheel(widget)
    _plain_tooltips(widget)
    return scroll
