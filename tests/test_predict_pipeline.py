"""``predict`` on the shipped model's verified artifacts: they are the export of the shipped weights, they match PyTorch
on real faces within their tolerance, one age-network call per image, the thread count is the one asked for, bundles
run with their own artifact and detector, video with tracking, and the user-facing lines."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from c3ae_edge import artifact_set
from c3ae_edge.pipeline import AgePipeline, PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
CHIPS = ROOT / "calibration"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "c3ae_edge.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


def chips(n: int) -> list[Path]:
    """``n`` embedded UTKFace chips (real faces) spread over the ages."""
    rows = sorted(csv.DictReader(open(CHIPS / "labels.csv")), key=lambda r: float(r["age"]))
    return [CHIPS / rows[int(i)]["file"] for i in np.linspace(0, len(rows) - 1, n)]


@pytest.fixture(scope="module")
def torch_pipe() -> AgePipeline:
    return AgePipeline.build(PipelineConfig(runtime="torch"))


def test_shipped_artifacts_are_the_export_of_the_shipped_weights():
    """The manifest that ships with the artifacts: the shipped weights' sha256, the pinned converters, every artifact
    verified on 500 held-out faces, and the files it names are the files that ship."""
    from c3ae_edge.export.bundle_check import sha256
    from c3ae_edge.export.ship import SHIP_EPOCH
    from c3ae_edge.weights import shipped_path

    s = artifact_set.shipped()
    man = s.manifest
    assert man.model["weights_sha256"] == sha256(shipped_path("c3ae_full"))
    pins = dict(ln.split("#")[0].strip().split("==") for ln in open(ROOT / "constraints.txt") if "==" in ln)
    for dist in ("torch", "litert-torch", "ai-edge-litert", "numpy"):
        assert man.toolchain[dist].split("+")[0] == pins[dist], dist
    assert man.build["from_source_date_epoch"] and man.build["time"].startswith("2026-01-01")
    assert sorted(s.precisions()) == ["fp32", "int8"] and man.primary_artifact["precision"] == "int8"
    for art in man.artifacts:
        assert art["verification"]["passed"] and art["verification"]["faces"] == 500
        assert s.path(art).stat().st_size == art["bytes"] < 200_000
    assert {p.name for p in s.folder.iterdir()} == {"manifest.json", *(a["file"] for a in man.artifacts)}
    assert SHIP_EPOCH


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_artifact_ages_match_pytorch_on_real_faces(precision, torch_pipe):
    """40 embedded UTKFace chips through the artifact and through PyTorch: within the artifact's tolerance."""
    pipe = AgePipeline.build(PipelineConfig(precision=precision))
    assert pipe.engine.info.runtime == "ai-edge-litert/xnnpack" and pipe.engine.info.precision == precision
    got = [pipe.predict_file(p, aligned=True).faces[0].age for p in chips(40)]
    ref = [torch_pipe.predict_file(p, aligned=True).faces[0].age for p in chips(40)]
    diff = np.abs(np.subtract(got, ref))
    assert diff.max() <= pipe.engine.info.tolerance_years, diff.max()
    assert diff.max() > 0 if precision == "int8" else diff.max() < 0.01


def test_artifact_ages_match_pytorch_on_fgnet_photos(fgnet_dir, torch_pipe):
    """FG-NET photos, faces found by the detector: the same boxes, ages within the int8 artifact's tolerance."""
    pipe = AgePipeline.build(PipelineConfig())
    photos = sorted((fgnet_dir / "images").glob("*.JPG"))[::50]
    n, worst = 0, 0.0
    for p in photos:
        img, _ = pipe.decode(p)
        boxes = [d.box for d in pipe.detect(img)]
        if boxes:
            a, b = pipe.ages(pipe.crops(img, boxes)), torch_pipe.ages(torch_pipe.crops(img, boxes))
            worst, n = max(worst, float(np.abs(a - b).max())), n + len(boxes)
    assert n >= len(photos) - 3
    assert worst <= pipe.engine.info.tolerance_years


def test_shipped_fp32_is_byte_for_byte_what_export_writes(rpi_bundle):
    """A fresh rpi4 export of the shipped weights with the pinned converters writes the same fp32 file (int8 depends
    on the calibration faces; it is checked against PyTorch above)."""
    from c3ae_edge.export.bundle_check import sha256

    shipped = artifact_set.shipped().artifact("fp32")
    assert sha256(rpi_bundle / "c3ae_full_fp32.tflite") == shipped["sha256"]


def _two_faces(tmp_path: Path) -> Path:
    from PIL import Image

    a, b = (Image.open(p).convert("RGB").resize((200, 200)) for p in chips(2))
    canvas = Image.new("RGB", (560, 300), (90, 90, 90))
    canvas.paste(a, (40, 50))
    canvas.paste(b, (320, 50))
    canvas.save(tmp_path / "two.jpg", quality=95)
    return tmp_path / "two.jpg"


def test_all_faces_of_an_image_go_through_one_call(tmp_path):
    pipe = AgePipeline.build(PipelineConfig())
    calls = []
    run = pipe.engine.run
    pipe.engine.run = lambda x: calls.append(len(x)) or run(x)
    res = pipe.predict_file(_two_faces(tmp_path))
    assert len(res.faces) == 2 and calls == [2], (res, calls)
    cx = sorted(f.box[0] for f in res.faces)
    assert cx[0] < 280 < cx[1]  # (cx, cy, side): one face in each half


def _threads_after(n: int) -> str:
    code = (
        "import os,cv2;from c3ae_edge.pipeline import AgePipeline,PipelineConfig;"
        f"p=AgePipeline.build(PipelineConfig(threads={n}));p.detector;"
        "r=p.predict_file(os.environ['IMG'],aligned=True);"
        "print(len(os.listdir('/proc/self/task')),cv2.getNumThreads(),p.engine.info.threads)"
    )
    env = {**os.environ, "IMG": str(chips(1)[0]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_thread_count_is_the_one_asked_for():
    """1 thread: no worker threads from the runtimes; 3: OpenCV set to 3 and the interpreters' pools grow."""
    one, three = _threads_after(1), _threads_after(3)
    assert one[1:] == ["1", "1"] and three[1:] == ["3", "3"]
    assert int(three[0]) >= int(one[0]) + 2, (one, three)


def test_predict_cli_lines(tmp_path):
    """Text and JSON name the face box (cx, cy, side); -v names the runtime; errors name the path once; the
    runtime's INFO line never reaches the terminal."""
    img = chips(1)[0]
    r = cli("predict", str(img), "--aligned", "-v")
    assert r.returncode == 0, r.stderr
    assert "INFO" not in r.stderr and "ai-edge-litert/xnnpack" in r.stderr and "c3ae_full_int8.tflite" in r.stderr
    assert "\tage " in r.stdout and "\tbox " in r.stdout
    j = json.loads(cli("predict", str(img), "--aligned", "--json").stdout)
    cx, cy, side = j["faces"][0]["box"]
    assert abs(side - 0.84 * 200) < 1 and abs(cx - 0.495 * 200) < 1
    r = cli("predict", str(tmp_path / "missing.jpg"))
    assert r.returncode == 1 and r.stderr.count(str(tmp_path / "missing.jpg")) == 1
    assert r.stderr.strip() == f"c3ae-edge: error: {tmp_path / 'missing.jpg'}: no such file"


def test_camera_that_cannot_open_is_one_line():
    r = cli("predict", "--camera", "97")
    assert r.returncode == 2 and r.stderr.strip() == (
        "c3ae-edge: error: camera 97: cannot be opened (no such device, busy, or no permission)"
    )


def test_bad_options_are_one_line():
    for args, msg in (
        (["--runtime", "nope"], "--runtime nope"),
        (["--runtime", "onnxruntime"], "does not run tflite artifacts"),
        (["--precision", "fp16"], "--precision fp16"),
        (["--threads", "0"], "--threads 0"),
        (["--detect-every", "0"], "--detect-every 0"),
        (["--bundle", "/nonexistent"], "no such bundle folder"),
    ):
        r = cli("predict", str(chips(1)[0]), *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, (args, r.stderr)


def make_clip(path: Path, photos: list[Path], per_photo: int = 12, size=(640, 480)) -> None:
    """A short mp4 made with OpenCV's VideoWriter: each photo fitted into the frame, drifting 2 px per frame."""
    import cv2

    from c3ae_edge.bench.e2e import make_frame
    from c3ae_edge.data.imageio import load_rgb

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    assert w.isOpened()
    for p in photos:
        fr = make_frame(load_rgb(p), size)[0]
        for i in range(per_photo):
            w.write(cv2.cvtColor(np.roll(fr, 2 * i, axis=1), cv2.COLOR_RGB2BGR))
    w.release()


def test_video_tracks_faces_and_smooths_ages(fgnet_dir, tmp_path):
    """Three FG-NET photos as one clip: one JSON line per frame, three tracks (a cut starts a new one), ages per track
    within the int8 tolerance of the photo's own age, the detector every 4 frames, and a summary."""
    photos = [fgnet_dir / "images" / n for n in ("001A02.JPG", "002A05.JPG", "003A18.JPG")]
    clip = tmp_path / "clip.mp4"
    make_clip(clip, photos)
    r = cli("predict", str(clip), "--json", "--detect-every", "4")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    frames, summary = lines[:-1], lines[-1]["summary"]
    assert [f["frame"] for f in frames] == list(range(36)) and summary["frames"] == 36
    assert summary["tracks"] == 3 and summary["faces"] == sum(len(f["faces"]) for f in frames) >= 33
    assert summary["detections"] == sum(f["detected"] for f in frames) <= 12
    assert "36 frames" in r.stderr and "frames/s" in r.stderr
    pipe = AgePipeline.build(PipelineConfig())
    for k, p in enumerate(photos):
        tracks = {f["track"] for fr in frames[12 * k : 12 * k + 12] for f in fr["faces"]}
        assert len(tracks) == 1, tracks
        photo_age = pipe.predict_file(p).faces[0].age
        last = frames[12 * k + 11]["faces"][0]["age"]
        assert abs(last - photo_age) < 3.0, (p.name, last, photo_age)  # frames are re-encoded: same face, not pixels
    short = cli("predict", str(clip), "--max-frames", "5")
    assert short.returncode == 0 and "5 frames" in short.stderr
    assert len([ln for ln in short.stdout.splitlines() if "\tframe " in ln]) == 5


def test_board_scripts_print_no_runtime_info(rpi_bundle, tmp_path):
    """reference_infer.py and onboard.py as a bundle carries them: the TFLite runtime's INFO line never shows."""
    r = subprocess.run(
        [sys.executable, str(rpi_bundle / "reference_infer.py"), "--self-test"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "INFO" not in r.stderr and "PASS" in r.stderr, r.stderr
    onboard = ROOT / "c3ae_edge" / "board" / "onboard.py"
    r = subprocess.run(
        [
            sys.executable,
            str(onboard),
            str(rpi_bundle),
            "--runs",
            "20",
            "--warmup",
            "2",
            "--json",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "INFO" not in r.stderr + r.stdout, r.stderr[-2000:]


def test_bundle_runs_its_own_artifact_and_detector(rpi_bundle, tmp_path):
    """--bundle: its manifest's artifact (fp32: the same bytes as the shipped one, so the same ages) and its detector
    files; a swapped artifact is one line."""
    import shutil

    img = chips(3)[1]
    shipped = cli("predict", str(img), "--aligned", "--json", "--precision", "fp32").stdout
    r = cli("predict", str(img), "--aligned", "--json", "--precision", "fp32", "--bundle", str(rpi_bundle), "-v")
    assert r.returncode == 0 and r.stdout == shipped and str(rpi_bundle) in r.stderr
    bad = tmp_path / "bad"
    shutil.copytree(rpi_bundle, bad)
    (bad / "c3ae_full_int8.tflite").write_bytes((bad / "c3ae_full_fp32.tflite").read_bytes())
    r = cli("predict", str(img), "--bundle", str(bad))
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1 and "sha256" in r.stderr, r.stderr
