"""``pip install c3ae-edge`` without extras: the built wheel in a fresh venv that sees only the core's dependencies
(numpy, Pillow, OpenCV, ai-edge-litert, typer/rich, cryptography, packaging and what they need: linked from this venv,
no download). No PyTorch importable; predict on real photos and a video, publish, pull from a file:// store, verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _closure(reqs: list[str]) -> set[str]:
    """The installed distributions ``reqs`` need, transitively (markers evaluated, no extras)."""
    from packaging.requirements import Requirement

    seen, todo = set(), list(reqs)
    while todo:
        r = Requirement(todo.pop())
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            continue
        name = r.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        todo += metadata.distribution(r.name).requires or []
    return seen


def _core_requires(whl: Path) -> list[str]:
    """The wheel's own Requires-Dist lines without an extra (what `pip install c3ae-edge` installs)."""
    import zipfile

    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r]


def _core_site(dst: Path, whl: Path) -> Path:
    """A site folder of links to the core's dependency closure, as this venv installed them."""
    dst.mkdir()
    core = _core_requires(whl)
    assert not any(r.startswith(("torch", "scipy", "onnx", "openvino", "litert-torch")) for r in core), core
    for name in _closure(core):
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (dst / top).exists():
                (dst / top).symlink_to(src)
    assert not (dst / "torch").exists()
    return dst


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory, wheel: Path) -> Path:
    tmp = tmp_path_factory.mktemp("torch-free")
    pip = [sys.executable, "-m", "pip"]
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    whl = wheel
    (site / "core.pth").write_text(f"{_core_site(tmp / 'core-site', whl)}\n")
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q", str(whl)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed command, outside the checkout (its folder would shadow the installed package)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "C3AE_DATA")}
    return subprocess.run(
        [str(venv / "bin" / "c3ae-edge"), *args], capture_output=True, text=True, timeout=600, cwd=venv.parent, env=env
    )


def test_no_torch_and_extras_named(core_venv):
    py = str(core_venv / "bin" / "python")
    out = core_venv.parent
    r = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True, cwd=out)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = subprocess.run(
        [py, "-c", "import c3ae_edge; print(c3ae_edge.__file__)"], capture_output=True, text=True, cwd=out
    )
    assert "site-packages/c3ae_edge" in r.stdout
    r = run(core_venv, "export", "--target", "rpi4")
    assert r.returncode == 2 and r.stderr.strip() == (
        "c3ae-edge: error: `c3ae-edge export` needs the 'export' extra (torch is not installed): "
        "pip install 'c3ae-edge[export]'"
    )
    r = run(core_venv, "predict", str(ROOT / "calibration" / "images"), "--runtime", "torch")
    assert r.returncode == 2 and "'train' extra" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_predict_photos_and_video_without_torch(core_venv, fgnet_dir, tmp_path):
    """The same ages and boxes as the full install's predict, on FG-NET photos and on a clip made from them."""
    from test_predict_pipeline import make_clip

    photos = [str(p) for p in sorted((fgnet_dir / "images").glob("*.JPG"))[::100]]
    r = run(core_venv, "predict", *photos, "--json", "-v")
    assert r.returncode in (0, 1), r.stderr
    full = subprocess.run(
        [sys.executable, "-m", "c3ae_edge.cli", "predict", *photos, "--json"], capture_output=True, text=True
    )
    assert r.stdout == full.stdout and r.stdout.count('"age"') >= len(photos) - 2
    assert "ai-edge-litert/xnnpack" in r.stderr and "INFO" not in r.stderr
    clip = tmp_path / "clip.mp4"
    make_clip(clip, [Path(p) for p in photos[:3]])
    v = run(core_venv, "predict", str(clip), "--json")
    assert v.returncode == 0, v.stderr
    summary = json.loads(v.stdout.splitlines()[-1])["summary"]
    assert summary["frames"] == 36 and summary["faces"] >= 30 and summary["tracks"] >= 3


def test_publish_pull_verify_without_torch(core_venv, rpi_bundle, tmp_path):
    """keygen, sign, publish to a folder, list and pull it back over file://, verify the pulled bundle: no torch."""
    b = tmp_path / rpi_bundle.name
    shutil.copytree(rpi_bundle, b)
    for args in (
        ("keygen", str(tmp_path / "k"), "--unencrypted"),
        ("sign", str(b), "--key", str(tmp_path / "k.key")),
        ("publish", str(b), "--to", str(tmp_path / "store"), "--key", str(tmp_path / "k.key")),
    ):
        r = run(core_venv, *args)
        assert r.returncode == 0, (args, r.stderr)
    store = f"file://{tmp_path / 'store'}"
    r = run(core_venv, "releases", "--from", store, "--key", str(tmp_path / "k.pub"))
    assert r.returncode == 0 and "c3ae_full" in r.stdout, r.stderr
    pub = str(tmp_path / "k.pub")
    r = run(core_venv, "pull", "c3ae_full", "--target", "rpi4", "--from", store, "--key", pub, "--out", str(tmp_path))
    assert r.returncode == 0 and "pulled c3ae_full" in r.stdout, r.stderr
    pulled = tmp_path / "c3ae_full-rpi4"
    r = run(core_venv, "verify", str(pulled), "--key", pub)
    assert r.returncode == 0 and "signature OK" in r.stdout and "INFO" not in r.stderr, r.stderr
    for art in ("c3ae_full_int8.tflite", "c3ae_full_fp32.tflite"):  # (and under tflite-runtime where it is prepared)
        line = f"{art} under ai-edge-litert/xnnpack"
        assert any(ln.strip().startswith(line) and ": OK" in ln for ln in r.stdout.splitlines()), r.stdout
    img = str(ROOT / "calibration" / "images" / sorted(os.listdir(ROOT / "calibration" / "images"))[0])
    r = run(core_venv, "predict", img, "--aligned", "--bundle", str(pulled), "-v")
    assert r.returncode == 0 and "age" in r.stdout and str(pulled) in r.stderr, r.stderr


@pytest.mark.aarch64
def test_torch_free_wheel_predicts_in_the_emulated_arm64_root(wheel, fgnet_dir):
    """Opt-in (bench/aarch64/README.md): the wheel installed offline from aarch64 wheels in the Debian bookworm arm64
    root under qemu (Pi 4 cpuinfo), no torch there, predict on FG-NET photos: the x86 host's ages and boxes."""
    sys.path.insert(0, str(ROOT / "bench" / "aarch64"))
    import predict_core

    photos = sorted((fgnet_dir / "images").glob("*.JPG"))[::250]
    res = predict_core.run(wheel, photos)
    assert not res["torch_importable_in_root"] and res["predict_rc"] == 0, res
    assert res["faces_aarch64"] == res["faces_x86"] >= len(photos) - 1
    assert res["max_abs_age_diff_aarch64_vs_x86"] <= 0.05 and res["max_box_diff_px"] <= 1.0, res
