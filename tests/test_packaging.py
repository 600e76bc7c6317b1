"""Packaging: setup.cfg lists every package folder, the npe2 manifest validates."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_dirs() -> set[str]:
    found = set()
    for base, prefix in ((ROOT / "src", ""), (ROOT, "")):
        for init in base.glob("*/**/__init__.py") if base == ROOT / "src" else [ROOT / "napari_unet" / "__init__.py"]:
            rel = init.parent.relative_to(base)
            found.add(prefix + ".".join(rel.parts))
    return found


def test_setup_cfg_lists_all_packages():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}
    assert listed == _package_dirs()


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-unet")
    assert manifest.name == "napari-unet"
    # every command's python_name resolves to a real callable
    for cmd in manifest.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        import importlib

        assert callable(getattr(importlib.import_module(module), attr)), cmd.python_name


def test_console_script_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert eps.get("napari-unet") == "unet_core.cli:main"


def test_sample_data_contribution():
    from napari_unet._sample_data import sample_nuclei

    (img, img_meta, kind), (lab, _, lab_kind) = sample_nuclei()
    assert kind == "image" and lab_kind == "labels"
    assert img.dtype.name == "uint16" and img.shape == lab.shape == (512, 512)
    assert lab.max() > 50
