"""BioImage Model Zoo packages: export passes bioimageio.core's test offline, loads back natively
(same probabilities), foreign packages run through bioimageio.core, unrunnable ones are refused."""

from __future__ import annotations

import ast
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from unet_core import bmz_architecture
from unet_core.bmz import valid_size_rule
from unet_core.errors import CheckpointError, InputError

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CONFIGS = [
    dict(depth=2, base_channels=4, padding="valid", batch_norm=True),
    dict(depth=2, base_channels=4, padding="same", up_mode="bilinear"),
    dict(depth=3, base_channels=4, n_classes=3),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_standalone_architecture_is_the_unet(kw):
    import torch

    from unet_core.bmz import _architecture_kwargs
    from unet_core.models.unet import UNet

    torch.manual_seed(0)
    net = UNet(**kw).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    alone = bmz_architecture.UNet(**_architecture_kwargs(net.config)).eval()
    assert list(alone.state_dict()) == list(net.state_dict())
    alone.load_state_dict(net.state_dict())
    n = 37 if net.border == 0 else net.valid_input_size(9)
    x = torch.randn(2, 1, n, n + (0 if net.border else 5))
    with torch.inference_mode():
        want = torch.softmax(net(x), 1)
        assert torch.equal(alone(x), want)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript, deprecated in torch 2.10
            scripted = torch.jit.script(alone)
        assert torch.allclose(scripted(x), want, atol=1e-6)


def test_standalone_architecture_imports_only_torch():
    tree = ast.parse(Path(bmz_architecture.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots == {"__future__", "torch"}


def test_valid_size_rule():
    from unet_core.models.unet import UNet

    net = UNet(depth=3, base_channels=4)
    lo, step = valid_size_rule(net)
    assert (lo, step) == (net.valid_input_size(1), 8)
    assert all(net.is_valid_input_size(lo + k * step) for k in range(6))
    assert not any(net.is_valid_input_size(n) for n in range(1, lo))
    assert not any(net.is_valid_input_size(lo + k) for k in range(1, step))
    same = UNet(depth=2, base_channels=4, padding="same")  # context 20: min keeps 1 pixel inside the halo
    assert valid_size_rule(same) == (44, 4) and same.context == 20


def test_provenance_is_made_yaml_safe():
    from unet_core.bmz import _plain

    meta = {"metrics": {"loss": 0.5, "val_ap": float("nan")}, "shape": (1, 2), "path": Path("/x"), 3: True}
    assert _plain(meta) == {"metrics": {"loss": 0.5, "val_ap": None}, "shape": [1, 2], "path": "/x", "3": True}


def test_export_refuses_bad_options(tmp_path):
    from unet_core.bmz import export_bmz

    with pytest.raises(InputError, match="author"):
        export_bmz(tmp_path / "m.pt", tmp_path / "p.zip", authors=[])
    with pytest.raises(InputError, match=r"\.zip"):
        export_bmz(tmp_path / "m.pt", tmp_path / "p.tar", authors=["A"])
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_bmz(tmp_path / "m.pt", tmp_path / "p.zip", authors=["A"])


# ------------------------------------------------------------------ with bioimageio.core
@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A U-Net trained 2 steps with the CLI and exported with the CLI: (checkpoint, package)."""
    pytest.importorskip("bioimageio.core")
    from unet_core.cli import main
    from unet_core.io import write_tiff
    from unet_core.sample_data import synthetic_nuclei

    d = tmp_path_factory.mktemp("bmz")
    image, labels = synthetic_nuclei((96, 96), seed=3)
    write_tiff(d / "img.tif", image)
    write_tiff(d / "lab.tif", labels)
    assert main(["train", "--image", str(d / "img.tif"), "--labels", str(d / "lab.tif"), "-o", str(d / "m.pt"),
                 "--iterations", "2", "--depth", "2", "--base-channels", "4", "--tile-size", "32",
                 "--val-fraction", "0"]) == 0
    assert main(["export-bmz", str(d / "m.pt"), "-o", str(d / "m.zip"), "--author", "A. Tester",
                 "--name", "tiny nuclei"]) == 0
    return d / "m.pt", d / "m.zip"


def _rdf(pkg: Path) -> dict:
    import yaml

    with zipfile.ZipFile(pkg) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


def _rewrite(pkg: Path, out: Path, edit, extra_files: dict[str, bytes] | None = None) -> Path:
    """Copy a package with its rdf.yaml changed by ``edit(rdf)`` (and files added)."""
    import yaml

    rdf = _rdf(pkg)
    edit(rdf)
    with zipfile.ZipFile(pkg) as zi, zipfile.ZipFile(out, "w") as zo:
        for name in zi.namelist():
            zo.writestr(name, yaml.safe_dump(rdf).encode() if name == "rdf.yaml" else zi.read(name))
        for name, data in (extra_files or {}).items():
            zo.writestr(name, data)
    return out


def _foreign(rdf: dict) -> None:
    rdf["config"].pop("napari_unet")
    rdf["tags"].remove("napari-unet")


@pytest.mark.slow
def test_package_passes_bioimageio_core_test_offline(package):
    from bioimageio.core import test_model

    summary = test_model(package[1])
    failed = [(d.name, [e.msg for e in d.errors][:2]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    tested = " ".join(d.name for d in summary.details)
    assert "torchscript" in tested and "pytorch_state_dict" in tested


@pytest.mark.slow
def test_package_describes_the_model(package):
    from unet_core.checkpoint import load_checkpoint

    ckpt_path, pkg = package
    ckpt = load_checkpoint(ckpt_path)
    rdf = _rdf(pkg)
    assert rdf["format_version"].startswith("0.5") and rdf["authors"] == [{"name": "A. Tester"}]
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["callable"] == "UNet" and arch["kwargs"]["depth"] == 2
    lo, step = valid_size_rule(ckpt.model)
    y_in = next(a for a in rdf["inputs"][0]["axes"] if a.get("id") == "y")
    y_out = next(a for a in rdf["outputs"][0]["axes"] if a.get("id") == "y")
    assert y_in["size"] == {"min": lo, "step": step}
    assert y_out["size"]["offset"] == -2 * ckpt.model.border
    norm = ckpt.config.normalization
    scale = next(p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_range")["kwargs"]
    assert (scale["min_percentile"], scale["max_percentile"]) == (norm.low, norm.high)
    with zipfile.ZipFile(pkg) as zf:
        assert zf.read(arch["source"]) == Path(bmz_architecture.__file__).read_bytes()
        readme = zf.read(rdf["documentation"]["source"]).decode()
    assert "## Training" in readme and '"iterations": 2' in readme


@pytest.mark.slow
def test_native_roundtrip_predicts_exactly_like_the_checkpoint(package, sample):
    from unet_core.bmz import load_model_file
    from unet_core.checkpoint import Checkpoint, load_checkpoint
    from unet_core.models.unet import UNet
    from unet_core.tiling import predict_tiled

    ckpt_path, pkg = package
    loaded = load_model_file(pkg)
    assert isinstance(loaded, Checkpoint) and isinstance(loaded.model, UNet)
    assert loaded.meta["bmz_package"] == str(pkg)
    original = load_checkpoint(ckpt_path)
    assert loaded.config == original.config
    assert isinstance(load_model_file(ckpt_path), Checkpoint)  # a .pt stays a checkpoint
    image = sample[0]
    want = predict_tiled(original.model, image, device="cpu")
    assert np.array_equal(predict_tiled(loaded.model, image, device="cpu"), want)


@pytest.mark.slow
def test_foreign_package_runs_through_bioimageio_core(package, sample, tmp_path):
    from unet_core.bmz import BmzPredictor, load_bmz
    from unet_core.checkpoint import load_checkpoint
    from unet_core.progress import run_to_end
    from unet_core.tiling import predict_tiled

    ckpt_path, pkg = package
    foreign = load_bmz(_rewrite(pkg, tmp_path / "foreign.zip", _foreign))
    assert isinstance(foreign, BmzPredictor) and foreign.weight_format == "pytorch_state_dict"
    image = sample[0][:100, :90]
    got = foreign.predict(image)
    want = predict_tiled(load_checkpoint(ckpt_path).model, image, device="cpu")
    assert got.shape == want.shape == (2, 100, 90)
    # bioimage.io takes the percentiles over the mirror-padded input, the engine over the image
    assert np.abs(got - want).mean() < 5e-3
    assert (got.argmax(0) == want.argmax(0)).mean() > 0.99
    records = []
    stack = run_to_end(foreign.iter_predict(np.stack([image, image])), records.append)
    assert stack.shape == (2, 2, 100, 90) and np.allclose(stack[1], got, atol=1e-6)
    assert [(r.step, r.total) for r in records] == [(1, 2), (2, 2)]


@pytest.mark.slow
def test_unrunnable_packages_are_refused(package, tmp_path):
    from unet_core.bmz import load_bmz

    pkg = package[1]

    def onnx_only(rdf):
        _foreign(rdf)
        rdf["weights"] = {"onnx": {"source": "weights.onnx", "opset_version": 17}}

    with pytest.raises(CheckpointError, match="only onnx weights"):
        load_bmz(_rewrite(pkg, tmp_path / "onnx.zip", onnx_only, {"weights.onnx": b"not a model"}))

    def remote(rdf):
        _foreign(rdf)
        del rdf["weights"]["pytorch_state_dict"]
        rdf["weights"]["torchscript"]["source"] = "https://example.org/weights.pt"
        del rdf["weights"]["torchscript"]["sha256"], rdf["weights"]["torchscript"]["parent"]

    with pytest.raises(CheckpointError, match="downloaded"):
        load_bmz(_rewrite(pkg, tmp_path / "remote.zip", remote))
    (tmp_path / "notes.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    with pytest.raises(CheckpointError, match="not a bioimage.io package"):
        load_bmz(tmp_path / "notes.zip")


@pytest.mark.slow
def test_cli_export_errors_are_one_line(package, tmp_path, capsys):
    from unet_core.cli import main

    ckpt_path, pkg = package
    capsys.readouterr()
    assert main(["export-bmz", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "p.zip"), "--author", "A"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such" in err
    before = pkg.read_bytes()
    assert main(["export-bmz", str(ckpt_path), "-o", str(pkg), "--author", "A"]) == 2
    assert "--overwrite" in capsys.readouterr().err and pkg.read_bytes() == before
    assert main(["export-bmz", str(ckpt_path), "-o", str(tmp_path / "p.zip"), "--author", "A",
                 "--license", "NOT-A-LICENCE"]) == 2
    err = capsys.readouterr().err
    assert "unknown licence 'NOT-A-LICENCE'" in err and len(err) < 300 and not (tmp_path / "p.zip").exists()


@pytest.mark.slow
def test_same_padded_net_declares_its_halo(tmp_path, sample):
    pytest.importorskip("bioimageio.core")
    import torch
    from bioimageio.core import test_model

    from unet_core.bmz import BmzPredictor, export_bmz, load_bmz, output_halo
    from unet_core.checkpoint import save_checkpoint
    from unet_core.models.unet import UNet
    from unet_core.tiling import predict_tiled

    torch.manual_seed(1)
    net = UNet(depth=2, base_channels=4, padding="same").eval()
    pkg = export_bmz(save_checkpoint(tmp_path / "same.pt", net), tmp_path / "same.zip", authors=["A"])
    summary = test_model(pkg)
    assert summary.status == "passed", [d.name for d in summary.details if d.status == "failed"]
    rdf = _rdf(pkg)
    y_out = next(a for a in rdf["outputs"][0]["axes"] if a.get("id") == "y")
    assert y_out["halo"] == output_halo(net) == net.context > 0 and y_out["size"]["offset"] == 0
    lo, step = valid_size_rule(net)
    assert lo % step == 0 and lo > 2 * net.context
    foreign = load_bmz(_rewrite(pkg, tmp_path / "foreign.zip", _foreign))
    assert isinstance(foreign, BmzPredictor) and foreign._halo == (net.context, net.context)
    image = sample[0][:70, :50]
    got, want = foreign.predict(image), predict_tiled(net, image, device="cpu")
    assert got.shape == want.shape and np.abs(got - want).mean() < 5e-3


@pytest.mark.slow
def test_cli_predicts_and_finetunes_from_packages(package, tmp_path, capsys):
    """`predict PACKAGE.zip` (ours: native; foreign: through bioimageio.core) and `train --from
    PACKAGE.zip` (ours) work like a checkpoint; a foreign package cannot be fine-tuned."""
    from unet_core.cli import main
    from unet_core.io import read_tiff

    ckpt_path, pkg = package
    d = ckpt_path.parent
    args = [str(d / "img.tif"), "--threshold", "0.5", "--no-split-touching"]
    assert main(["predict", str(ckpt_path), *args, "-o", str(tmp_path / "a.tif")]) == 0
    assert main(["predict", str(pkg), *args, "-o", str(tmp_path / "b.tif")]) == 0
    np.testing.assert_array_equal(read_tiff(tmp_path / "a.tif")[0], read_tiff(tmp_path / "b.tif")[0])
    foreign = _rewrite(pkg, tmp_path / "foreign.zip", _foreign)
    assert main(["predict", str(foreign), *args, "-o", str(tmp_path / "c.tif")]) == 0
    assert read_tiff(tmp_path / "c.tif")[0].shape == read_tiff(tmp_path / "a.tif")[0].shape
    train = ["train", "--image", str(d / "img.tif"), "--labels", str(d / "lab.tif"), "--iterations", "1",
             "--tile-size", "32", "--val-fraction", "0"]
    assert main([*train, "--from", str(pkg), "-o", str(tmp_path / "tuned.pt")]) == 0
    capsys.readouterr()
    assert main([*train, "--from", str(foreign), "-o", str(tmp_path / "no.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not be fine-tuned" in err and len(err.splitlines()) == 1
