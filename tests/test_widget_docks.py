"""The five docks fit a laptop screen, scroll instead of clipping, and behave (issue 12)."""

from __future__ import annotations

import pytest
from gui_support import open_widget, project_home, registry  # noqa: F401

pytestmark = pytest.mark.gui

DOCKS = ("Annotate", "Weight map", "Train", "Predict", "Export")
#: 768 px screen minus a taskbar
LAPTOP_HEIGHT = 768 - 60


def _open_all(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    return viewer, {name: open_widget(viewer, name) for name in DOCKS}


def _wheel(widget, delta: int = -120):
    from qtpy.QtCore import QPoint, QPointF, Qt
    from qtpy.QtGui import QWheelEvent
    from qtpy.QtWidgets import QApplication

    pos = QPointF(widget.rect().center())
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0),
                        QPoint(0, delta), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def _settle(qtbot):
    from qtpy.QtWidgets import QApplication

    for _ in range(3):
        QApplication.processEvents()
    qtbot.wait(50)


def test_five_docks_fit_a_laptop_screen(make_napari_viewer, qtbot, project_home, registry):  # noqa: F811
    viewer, docks = _open_all(make_napari_viewer)
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() <= LAPTOP_HEIGHT
    window.resize(1366, 768)
    _settle(qtbot)
    for name, widget in docks.items():
        scroll = widget.dock_scroll
        content, bar = scroll.widget(), scroll.verticalScrollBar()
        assert widget.isVisible() and scroll.viewport().height() > 0, name
        # rows are never squeezed below their minimum (overlap, clipping): the rest scrolls
        assert content.height() >= content.minimumSizeHint().height(), name
        assert bar.maximum() == max(0, content.height() - scroll.viewport().height()), name
        bar.setValue(bar.maximum())  # the last row can be reached
        status = widget.status
        bottom = status.mapTo(content, status.rect().bottomLeft()).y()
        assert bottom <= bar.value() + scroll.viewport().height(), name


def test_advanced_options_are_folded(make_napari_viewer, qtbot, project_home, registry):  # noqa: F811
    viewer = make_napari_viewer(show=True)
    train = open_widget(viewer, "Train")
    _settle(qtbot)
    assert train.train_form.editors["iterations"].isVisible()
    seed = train.train_form.editors["seed"]
    assert not seed.isVisible() and not train.train_form.advanced.is_expanded()
    train.train_form.advanced.set_expanded(True)
    assert seed.isVisible()
    # the weight-map and augmentation groups start folded, their values still read
    assert not train.weights_form.isVisible()
    assert not train.extra_forms["augmentation"].isVisible()
    assert train.config().weights == train.weights_form.value()
    train.train_form.set("seed", 7)
    assert train.config().seed == 7


def test_wheel_scrolls_the_dock_not_the_choice(make_napari_viewer, qtbot, project_home, registry):  # noqa: F811
    viewer = make_napari_viewer(show=True)
    train = open_widget(viewer, "Train")
    viewer.window._qt_window.resize(1366, 500)
    _settle(qtbot)
    bar = train.dock_scroll.verticalScrollBar()
    assert bar.maximum() > 0
    combo = train.source_combo
    assert combo.currentText() == "new model" and not combo.hasFocus()
    _wheel(combo)
    assert combo.currentText() == "new model"
    assert bar.value() > 0  # the scroll area took the wheel
    spin = train.train_form.editors["iterations"]
    before = spin.value()
    _wheel(spin, +120)
    assert spin.value() == before
    # with the keyboard focus, the wheel edits as usual
    train.window().activateWindow()
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus, timeout=3000)
    _wheel(combo)
    assert combo.currentText() == "checkpoint file"


def test_tooltips_are_short_plain_text(make_napari_viewer, qtbot, project_home, registry):  # noqa: F811
    from qtpy.QtWidgets import QWidget

    viewer, docks = _open_all(make_napari_viewer)
    seen = 0
    for name, widget in docks.items():
        for child in [widget, *widget.findChildren(QWidget)]:
            tip = child.toolTip()
            if not tip:
                continue
            seen += 1
            assert "``" not in tip and ":func:" not in tip and ":class:" not in tip, (name, tip)
            assert len(tip) <= 300, (name, tip)
    assert seen > 30


def test_clean_doc_strips_rest_and_shortens():
    from napari_unet._help import clean_doc

    text = ("Loss name for :func:`unet_core.training.losses.build_loss`: ``'wce'`` (weighted). "
            "Second sentence with `x`. Third sentence. " + "Long words " * 60)
    out = clean_doc(text)
    assert out == "Loss name for build_loss: 'wce' (weighted). Second sentence with x."
    assert clean_doc("word " * 200).endswith("...") and len(clean_doc("word " * 200)) <= 240


def test_help_shows_the_guide_offline(make_napari_viewer, qtbot, project_home, registry):  # noqa: F811
    from qtpy.QtWidgets import QTextBrowser

    from napari_unet._help import guide_section, user_guide_path

    assert user_guide_path() is not None
    viewer, docks = _open_all(make_napari_viewer)
    for name, widget in docks.items():
        assert guide_section(name).startswith("## "), name
        widget.help_button.click()
        browser = widget.help_dialog.findChild(QTextBrowser)
        assert name.lower() in browser.toPlainText().lower(), name
        widget.help_dialog.close()


def test_buttons_stay_put_when_the_status_wraps(make_napari_viewer, qtbot, project_home, registry):  # noqa: F811
    viewer, docks = _open_all(make_napari_viewer)
    viewer.window._qt_window.resize(1366, 768)
    _settle(qtbot)
    for name, button in (("Train", "start_button"), ("Predict", "predict_button")):
        widget = docks[name]
        button = getattr(widget, button)
        before = button.mapTo(widget, button.rect().topLeft())
        widget.status.setText("A long status that wraps over several lines. " * 8)
        _settle(qtbot)
        assert button.mapTo(widget, button.rect().topLeft()) == before, name


def test_guide_is_found_where_the_wheel_installs_it(tmp_path, monkeypatch):
    import sys

    import napari_unet._help as help_module

    monkeypatch.setattr(help_module, "__file__", str(tmp_path / "site" / "napari_unet" / "_help.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "env"))
    assert help_module.user_guide_path() is None
    installed = tmp_path / "env" / "share" / "napari-unet" / "docs" / "user-guide.md"
    installed.parent.mkdir(parents=True)
    installed.write_text("# guide\n\n## 3. Train\n\nPress Start.\n\n## 4. Predict\n\nx\n")
    assert help_module.user_guide_path() == installed
    assert help_module.guide_section("Train") == "## 3. Train\n\nPress Start."
    assert help_module.guide_section("Missing") == ""
