"""``napari-unet models``: list the built-in starting models and their measured quality."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the built-in models (usable wherever a checkpoint is accepted)",
        description="List the models shipped with napari-unet: name, description, channels, file size "
        "and the quality measured when they were trained (zero-shot on held-out images).",
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def describe(name: str) -> dict:
    """Registry entry, file size and the quality recorded in the checkpoint of built-in ``name``."""
    from ..builtin_models import BUILTIN_MODELS, builtin_model_path
    from ..checkpoint import load_checkpoint

    model = BUILTIN_MODELS[name]
    path = builtin_model_path(name)
    meta = load_checkpoint(path).meta
    return {
        "name": name,
        "description": model.description,
        "channels": model.channels,
        "kind": model.kind,
        "file": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "quality": meta.get("quality", {}),
    }


def _quality_lines(quality: dict) -> list[str]:
    lines = []
    for test, q in quality.items():
        lines.append(
            f"    {test}: AP@0.5 {q['ap50']:.2f}, AP@0.7 {q['ap70']:.2f}, "
            f"foreground IoU {q['foreground_iou']:.2f} ({q['images']} images)"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from ..builtin_models import list_builtin_models

    entries = [describe(m.name) for m in list_builtin_models()]
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    for e in entries:
        print(f"{e['name']}: {e['description']}")
        print(f"    {e['channels']} channel(s), {e['size_mb']:.1f} MB, {e['file']}")
        print("    zero-shot quality (no training on the user's images):")
        print("\n".join("  " + line for line in _quality_lines(e["quality"])))
    print("\nQuality: AP@0.5/0.7 of one-to-one matched objects, held-out images; model cards: "
          "docs/models/<name>.md")
    return 0
