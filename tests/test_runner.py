"""The standalone on-board runner: runs a real bundle in a virtual environment that holds only numpy and the runtimes,
writes the bench JSON schema, and merges with a ``c3ae-edge bench`` document."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER_DEPS = (
    "numpy",
    "numpy.libs",
    "ai_edge_litert",
    "onnxruntime",
)  # the runner's whole world (importable names + their metadata)

pytestmark = pytest.mark.slow  # full bundles, training or the data set: outside the fast tier


@pytest.fixture(scope="module")
def bundle(rpi_bundle: Path) -> Path:
    return rpi_bundle  # the session's shared rpi bundle (tests/conftest.py)


@pytest.fixture(scope="module")
def board_python(tmp_path_factory) -> Path:
    """A fresh venv (no pip, no system site-packages) that sees only the runner's dependencies, linked from ours."""
    d = tmp_path_factory.mktemp("boardvenv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(d / "venv")], check=True, timeout=120)
    py = d / "venv" / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for name in RUNNER_DEPS:
        spec = importlib.util.find_spec(
            name.split(".")[0]
        )  # where it really lives (a worktree venv may see another venv's packages)
        ours = (
            Path(spec.submodule_search_locations[0]).parent
            if spec and spec.submodule_search_locations
            else Path(sysconfig.get_paths()["purelib"])
        )
        for p in [ours / name, *ours.glob(f"{name}-*.dist-info")]:
            if p.exists():
                (site / p.name).symlink_to(p)
    return py


@pytest.mark.slow
def test_runner_is_standalone_and_writes_the_schema(bundle, board_python, tmp_path, cli):
    from c3ae_edge.board.onboard import SCHEMA

    for absent in ("torch", "c3ae_edge", "typer", "cv2", "PIL"):
        r = subprocess.run([str(board_python), "-c", f"import {absent}"], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode != 0, f"{absent} is importable in the board venv"
    runner = tmp_path / "onboard.py"
    r = cli("bench", "write-runner", tmp_path)
    assert r.code == 0 and runner.is_file(), r.err
    out = tmp_path / "board.json"
    r = subprocess.run(
        [str(board_python), str(runner), str(bundle), "--runs", "40", "--warmup", "5", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["schema"] == SCHEMA and doc["config"]["runner"] == "onboard.py"
    man = json.loads((bundle / "manifest.json").read_text())
    assert {r["artifact"]["file"] for r in doc["results"]} == {a["file"] for a in man["artifacts"]}
    for row in doc["results"]:
        assert (
            row["latency"]["count"] == 40 and row["latency"]["p50"] > 0 and row["threads"] == 1
        )  # Table 3 compares 1-thread rows
        assert (
            row["model"] == man["model"]["name"]
            and row["runtime"] == "ai-edge-litert"
            and row["delegate"]["name"] == "xnnpack"
        )
        assert row["parity"]["faces"] == len(man["parity_set"]["pytorch_age"]) and row["parity"]["within_tolerance"]
    assert doc["environment"]["versions"]["numpy"] and "torch" not in doc["environment"]["versions"]
    from c3ae_edge.bench.rows import BenchRow

    typed = [BenchRow.from_json(x) for x in doc["results"]]  # the runner's own rows are the package's typed rows
    assert [json.dumps(t.to_json()) for t in typed] == [json.dumps(x) for x in doc["results"]]
    assert all(t.timed and t.runtime == "ai-edge-litert" for t in typed)

    # one table across "machines": the harness document + the runner's
    r = cli(
        "bench",
        "--models",
        "c3ae_full",
        "--backends",
        "torch",
        "--precision",
        "fp32",
        "--runs",
        "20",
        "--warmup",
        "2",
        "-q",
        "--e2e",
        "0",
        "--json",
        tmp_path / "host.json",
    )  # the old spelling (bench = bench run) still runs, for one release
    assert r.code == 0 and "use `c3ae-edge bench run`" in r.lines[-1], r.err[-2000:]
    r = cli(
        "bench", "merge", tmp_path / "host.json", out, "--markdown", tmp_path / "m.md", "--json", tmp_path / "m.json"
    )
    assert r.code == 0, r.err
    merged = json.loads((tmp_path / "m.json").read_text())
    assert any("[on-board runner]" in r["machine"] for r in merged["results"]) and any(
        r["backend"] == "torch" for r in merged["results"]
    )
    md = (tmp_path / "m.md").read_text()
    assert "[on-board runner]" in md and "tflite" in md


def test_runner_rejects_a_folder_that_is_not_a_bundle(tmp_path):
    runner = ROOT / "c3ae_edge" / "board" / "onboard.py"
    shutil.copy(runner, tmp_path / "onboard.py")
    r = subprocess.run(
        [sys.executable, str(tmp_path / "onboard.py"), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a c3ae-edge bundle" in r.stderr


def test_runner_takes_its_stats_from_beside_it_or_from_the_package(tmp_path):
    """Run as a script, onboard.py loads the stats.py beside it by path (not a ``stats`` module found elsewhere), and
    says in one line when it is missing; imported as c3ae_edge.board.onboard, it uses the package's stats."""
    from c3ae_edge.board import onboard, stats

    assert onboard.runner_stats() is stats
    shutil.copy(ROOT / "c3ae_edge" / "board" / "onboard.py", tmp_path / "onboard.py")
    b = tmp_path / "b"  # no bundle_files, no stats.py of its own (ONNX and older bundles): the runner's stats
    b.mkdir()
    (b / "manifest.json").write_text('{"artifacts": []}')
    (tmp_path / "decoy").mkdir()
    (tmp_path / "decoy" / "stats.py").write_text("raise SystemExit('decoy stats imported')\n")

    def run():
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "decoy")}
        cmd = [sys.executable, str(tmp_path / "onboard.py"), str(b)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path / "decoy", env=env)

    r = run()
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{tmp_path / 'stats.py'}: missing; it travels with onboard.py" in r.stderr, r.stderr
    sibling = (ROOT / "c3ae_edge" / "board" / "stats.py").read_text()
    (tmp_path / "stats.py").write_text(sibling + "\nimport sys\nsys.stderr.write('sibling stats loaded\\n')\n")
    r = run()  # past the statistics: the manifest lacks the parity faces, said in one line
    assert r.returncode == 2 and r.stderr.splitlines()[0] == "sibling stats loaded", r.stderr
    assert "not a bundle this runner can read" in r.stderr.splitlines()[1] and "decoy" not in r.stderr, r.stderr


@pytest.mark.slow
def test_runner_photo_to_age_rows(bundle, fgnet_dir, tmp_path, cli):
    """The runner's end-to-end rows on real photos: the manifest's detector (an rpi bundle's own BlazeFace under the
    runner's TFLite runtime; facefind.py beside the runner for a bundle that names the OpenCV cascade), the bundle's
    own reference preprocessing, every artifact."""
    r = cli("bench", "write-runner", tmp_path)
    assert r.code == 0 and (tmp_path / "facefind.py").is_file(), r.err
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((fgnet_dir / "images").iterdir())[:40:10]:
        shutil.copy(p, photos / p.name)
    haar = tmp_path / "haar-bundle"  # the same bundle, its manifest naming the OpenCV cascade (other targets)
    shutil.copytree(bundle, haar)
    man = json.loads((haar / "manifest.json").read_text())
    from c3ae_edge.data.detect import detector_record

    man["face_box"]["detector"] = detector_record("haar-fast")
    (haar / "manifest.json").write_text(json.dumps(man))
    for b, name in ((bundle, "blazeface"), (haar, "haar-fast")):
        out = tmp_path / f"board-{name}.json"
        r = subprocess.run(
            [sys.executable, str(tmp_path / "onboard.py"), str(b), "--runs", "5", "--warmup", "1"]
            + ["--photos", str(photos), "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert not (b / "__pycache__").exists()  # its scripts ran from their checked bytes, no bytecode
        rows = [x for x in json.loads(out.read_text())["results"] if x.get("pipeline") == "photo-to-age"]
        man = json.loads((b / "manifest.json").read_text())
        assert man["face_box"]["detector"]["name"] == name
        assert {(x["artifact"]["file"], x["input"]) for x in rows} == {
            (a["file"], i) for a in man["artifacts"] for i in ("photos", "640x480 frames", "1280x720 frames")
        }
        from c3ae_edge.bench.rows import BenchRow, E2ERow

        assert all(isinstance(BenchRow.from_json(x), E2ERow) and BenchRow.from_json(x).to_json() == x for x in rows)
        for x in rows:
            assert x["images"] == 4 and x["faces_found"] >= 3 and x["detector"] == name
            assert set(x["stages"]) == {"decode", "detect", "crop", "age"} and x["throughput"]["unit"] == "images/s"
            assert x.get("detector_runtime", "").startswith("ai-edge-litert") == (name == "blazeface")
