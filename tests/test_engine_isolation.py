"""The engine never imports GUI packages; the plugin's top level stays light."""

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"GUI module {name} imported by the engine")
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=300)


def test_engine_imports_without_gui_packages():
    code = textwrap.dedent(
        """
        import pkgutil, importlib, unet_core
        names = [m.name for m in pkgutil.walk_packages(unet_core.__path__, "unet_core.") if not m.name.endswith("__main__")]
        for n in names:
            importlib.import_module(n)
        for n in unet_core.__all__:
            getattr(unet_core, n)
        from unet_core.cli import build_parser
        build_parser()
        print(len(names))
        """
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 10


def test_blocker_really_blocks():
    r = _run("import napari")
    assert r.returncode != 0 and "GUI module napari" in r.stderr


def test_plugin_top_level_is_light():
    r = subprocess.run(
        [sys.executable, "-c", "import sys, napari_unet; print(' '.join(m for m in ('torch', 'napari', 'qtpy', 'matplotlib') if m in sys.modules))"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_unet_core_top_level_is_light():
    r = subprocess.run(
        [sys.executable, "-c", "import sys, unet_core; print('torch' in sys.modules)"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.stdout.strip() == "False", r.stderr
