from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("C3AE_DATA", ROOT.parent / "shared" / "data"))
UTK = DATA / "utkface"
FGNET = DATA / "fgnet"
HAVE_DATA = (UTK / "labels.csv").is_file()
# Every command under test reads the same faces: the data set where there is one (C3AE_DATA set for them), else the
# 800 embedded UTKFace chips (C3AE_DATA unset, so export and bench fall back to them): the fast tier needs no data set.
FACES = UTK if HAVE_DATA else ROOT / "calibration"
if HAVE_DATA:
    os.environ["C3AE_DATA"] = str(DATA)
else:
    os.environ.pop("C3AE_DATA", None)


def repin(b: Path) -> None:
    """Re-pin every file of bundle ``b`` after an edit, as a forger without the key would: manifest.json's
    bundle_files and detector sha256 (where the bundle has them), then SHA256SUMS."""
    import json

    from c3ae_edge.export.bundle import _sums
    from c3ae_edge.export.bundle_check import sha256

    m = json.loads((b / "manifest.json").read_text())
    for f in m.get("bundle_files", []):
        f["sha256"], f["bytes"] = sha256(b / f["file"]), (b / f["file"]).stat().st_size
    det = (m.get("face_box") or {}).get("detector")
    if isinstance(det, dict) and "files" in det:
        det["model"]["sha256"] = sha256(b / det["files"]["model"])
    (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    _sums(b)


def edit_one_byte(path: Path) -> None:
    """Change one byte in the middle of ``path`` (its size stays)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i] = data[i] + 1 if data[i] < 126 else data[i] - 1
    path.write_bytes(bytes(data))


def once_per_run(tmp_path_factory, name: str, build) -> tuple[Path, dict]:
    """``build(folder) -> record`` (JSON) once per test run, shared by every pytest-xdist worker: the first worker that
    asks builds it in the run's common temporary folder while the others wait on its lock, then each reads the record.
    A build that fails leaves no record, so the next worker that asks tries again (and fails with its own message)."""
    import json

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, record = root / f"shared-{name}", root / f"shared-{name}.json"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not record.is_file():
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            folder.mkdir()
            record.write_text(json.dumps(build(folder)))
    return folder, json.loads(record.read_text())


@pytest.fixture(scope="session")
def cortex_m_bundle(tmp_path_factory) -> Path:
    """`export --target cortex-m` (its default engine: the generated C99 one) with 60 + 60 faces: the one conversion
    the microcontroller tests share (test_engine.py; test_mcu.py derives the --engine tflm bundle from it)."""
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed (pip extra 'mcu'): MCU targets not tested")
    from c3ae_edge.export.bundle import export_bundle
    from c3ae_edge.export.engine.host import host_cc

    engine = None if host_cc() else "tflm"  # no host C compiler: the engine cannot be built, TFLM still can

    def build(out: Path) -> dict:
        b = export_bundle("cortex-m", out=out, n_cal=60, n_verify=60, engine=engine, log=lambda *_: None)
        return {"bundle": b.name}

    out, rec = once_per_run(tmp_path_factory, "mcu", build)
    return out / rec["bundle"]


@pytest.fixture(scope="session")
def utk_dir() -> Path:
    assert (UTK / "labels.csv").is_file(), f"UTKFace not found at {UTK}"
    return UTK


@pytest.fixture(scope="session")
def fgnet_dir() -> Path:
    assert (FGNET / "labels.csv").is_file(), f"FG-NET not found at {FGNET}"
    return FGNET


# The fast tier is `pytest -m "not slow"`: no data set, few subprocesses. A test joins the slow tier by its marker
# (`pytestmark = pytest.mark.slow` for a whole module) or by using the data set's or the shared bundle's fixtures.
SLOW_FIXTURES = {"utk_dir", "fgnet_dir", "fresh_rpi_export", "rpi_bundle"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the slow tier; skip the opt-in aarch64 tests. Those need a root built once by
    bench/aarch64/build_root.sh and minutes of emulation: they run only when asked for (C3AE_ARM64_ROOT naming a
    complete root, or -m aarch64): .ci/run builds a fresh root and sets it, a developer's run skips them."""
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    from c3ae_edge.export import arm64

    if "aarch64" in (config.getoption("markexpr") or "") or (os.environ.get("C3AE_ARM64_ROOT") and arm64.root_ready()):
        return
    skip = pytest.mark.skip(reason="opt-in: C3AE_ARM64_ROOT=ROOT or -m aarch64 (bench/aarch64/README.md)")
    for item in items:
        if item.get_closest_marker("aarch64"):
            item.add_marker(skip)


WARMED = {"fresh_rpi_export": "shared_rpi_export", "rpi_bundle": "shared_rpi_export", "installed": "shared_install"}
_warm: list = []


def pytest_collection_finish(session):
    """Start the run's one rpi export (or the wheel's install) in a background thread when a selected test needs it:
    its pip and export subprocesses use the other core while the first tests run. One process starts it (the only one,
    or xdist's worker gw0); a test that needs it waits on once_per_run's lock."""
    import threading

    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return
    wanted = {WARMED[f] for item in session.items for f in item.fixturenames if f in WARMED}
    if wanted:
        make = globals()["shared_rpi_export" if "shared_rpi_export" in wanted else "shared_install"]
        t = threading.Thread(target=_quietly, args=(make, session.config._tmp_path_factory), daemon=True)
        t.start()
        _warm.append(t)


def _quietly(make, factory) -> None:
    """A failed background build leaves no record: the test that needs it builds again and fails with the reason."""
    try:
        make(factory)
    except Exception:
        pass


def pytest_sessionfinish(session):
    for t in _warm:  # no pip or export left running after the session
        t.join()


@dataclass
class Result:
    """What one in-process ``c3ae-edge`` call left: exit code, stdout, stderr (unpacks as a tuple too)."""

    code: int
    out: str
    err: str

    @property
    def returncode(self) -> int:  # read like a subprocess.CompletedProcess
        return self.code

    @property
    def stderr(self) -> str:
        return self.err

    @property
    def lines(self) -> list[str]:
        """The non-blank stderr lines."""
        return [ln for ln in self.err.splitlines() if ln.strip()]

    def __iter__(self):
        return iter((self.code, self.out, self.err))


def run_main(args: list[str], capsys, cwd: Path | None = None) -> Result:
    """``c3ae-edge ARGS`` in this process through the real entry point (its error handling and exit codes included)."""
    import signal

    from c3ae_edge.cli import main

    old_argv, old_cwd, old_sigint = sys.argv, os.getcwd(), signal.getsignal(signal.SIGINT)
    sys.argv = ["c3ae-edge", *map(str, args)]
    capsys.readouterr()
    code = 0
    try:
        if cwd:
            os.chdir(cwd)
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        signal.signal(signal.SIGINT, old_sigint)  # main() installs its own Ctrl-C handler
    o = capsys.readouterr()
    return Result(code, o.out, o.err)


def faces_env(monkeypatch) -> None:
    """C3AE_DATA as set above (the data set, or unset for the embedded faces), restored after the test."""
    if HAVE_DATA:
        monkeypatch.setenv("C3AE_DATA", str(DATA))
    else:
        monkeypatch.delenv("C3AE_DATA", raising=False)


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli("bench", "merge", ...)`` -> Result(code, out, err): the CLI run in this process, $C3AE_DATA as above."""
    faces_env(monkeypatch)
    return lambda *args, cwd=None: run_main(list(args), capsys, cwd)


def cli_subprocess(*args, cwd: Path = ROOT, env: dict | None = None, timeout: int = 900):
    """``python -m c3ae_edge.cli ARGS`` in a child process (this environment, C3AE_DATA as above)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "c3ae_edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or dict(os.environ),
        timeout=timeout,
    )


@dataclass(frozen=True)
class FreshExport:
    """One ``c3ae-edge export`` run in a fresh folder: where it ran, the bundle it wrote, what it printed."""

    cwd: Path
    bundle: Path
    run: object  # subprocess.CompletedProcess


FRESH_RPI_EXPORT = ("export", "--target", "rpi")  # the README's first command and tour run exactly this


@dataclass(frozen=True)
class Installed:
    """The built wheel installed with its dependencies into a fresh venv, as a pip user has it: its ``c3ae-edge``, its
    interpreter, and the environment to run them in (no C3AE_DATA, no PYTHONPATH, its own runtimes folder)."""

    c3ae: Path
    python: Path
    env: dict


def _run(*cmd, **kw) -> None:
    import subprocess

    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=1800, **kw)
    assert r.returncode == 0, (cmd[:4], r.stderr[-3000:])


def shared_wheel(factory) -> Path:
    """``pip wheel --no-deps`` of this checkout, built once per test run (two builds at once would share its build/)."""

    def build(d: Path) -> dict:
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", d, ROOT)
        return {"wheel": next(d.glob("c3ae_edge-*.whl")).name}

    d, rec = once_per_run(factory, "wheel", build)
    return d / rec["wheel"]


def shared_install(factory) -> Installed:
    """The wheel, `pip install 'WHEEL[all]' -c constraints.txt` into a fresh venv (packages from the index or pip's
    cache, as on a user's machine), then that install's own `c3ae-edge runtimes prepare tflite-runtime` into a fresh
    runtimes folder. Nothing of this checkout or its venv is visible there."""
    whl = shared_wheel(factory)

    def build(d: Path) -> dict:
        drop = ("C3AE_DATA", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTEST_XDIST_WORKER")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env["C3AE_RUNTIMES"] = str(d / "runtimes")
        _run(sys.executable, "-m", "venv", d / "venv", env=env)
        pip = [d / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile"]
        _run(*pip, "-c", ROOT / "constraints.txt", f"{whl}[all]", env=env, cwd=d)
        _run(d / "venv" / "bin" / "c3ae-edge", "runtimes", "prepare", "tflite-runtime", env=env, cwd=d)
        return env

    d, env = once_per_run(factory, "installed", build)
    return Installed(d / "venv" / "bin" / "c3ae-edge", d / "venv" / "bin" / "python", env)


def shared_rpi_export(factory) -> FreshExport:
    """``c3ae-edge export --target rpi`` of the installed wheel in a fresh folder (see ``fresh_rpi_export``)."""
    import subprocess

    inst = shared_install(factory)

    def build(cwd: Path) -> dict:
        env = {**inst.env, "SOURCE_DATE_EPOCH": "1700000000"}
        cmd = [str(inst.c3ae), *FRESH_RPI_EXPORT]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)
        assert r.returncode == 0, r.stderr[-2000:]
        return {"args": cmd, "returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}

    cwd, rec = once_per_run(factory, "fresh-rpi", build)
    return FreshExport(cwd, cwd / "exports" / "c3ae_full-0.1.0-rpi4", subprocess.CompletedProcess(**rec))


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    return shared_wheel(tmp_path_factory)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    """The built wheel installed with its dependencies into a fresh venv (``shared_install``)."""
    return shared_install(tmp_path_factory)


@pytest.fixture(scope="session")
def fresh_rpi_export(tmp_path_factory) -> FreshExport:
    """THE rpi bundle of a test run: ``c3ae-edge export --target rpi`` and nothing else, as a newcomer runs it: the
    installed wheel (``installed``), a fresh folder, the embedded faces (no C3AE_DATA, no ../shared/data beside it),
    both runtimes of the target prepared; SOURCE_DATE_EPOCH pins the build time. Exported once per test run (a
    background thread starts it when the run needs it, ``pytest_collection_modifyitems``) and shared by
    test_real_install, test_export, test_docs' README tour, test_release (a signed copy), test_board_runtimes,
    test_runner, test_bundle_detector and test_aarch64: tests copy it before they change anything."""
    return shared_rpi_export(tmp_path_factory)


@pytest.fixture(scope="session")
def rpi_bundle(fresh_rpi_export: FreshExport) -> Path:
    return fresh_rpi_export.bundle


@pytest.fixture(scope="session")
def release_keys(tmp_path_factory) -> dict[str, Path]:
    """Two unencrypted minisign key pairs made by `c3ae-edge keygen`: "key"/"pub" and "other_key"/"other_pub"."""
    d = tmp_path_factory.mktemp("keys")
    for name in ("release", "other"):
        r = cli_subprocess("keygen", d / name, "--unencrypted")
        assert r.returncode == 0, r.stderr
    return {
        "key": d / "release.key",
        "pub": d / "release.pub",
        "other_key": d / "other.key",
        "other_pub": d / "other.pub",
    }


@pytest.fixture(scope="session")
def tflite_runtime() -> Path:
    """The prepared tflite-runtime 2.14 venv's interpreter (`c3ae-edge runtimes prepare tflite-runtime`, the README's
    first command). Never used stale or incomplete: that fails with the fixing command; where it was never prepared the
    test skips, except under CI (CI=true), where it fails."""
    from c3ae_edge.export import runtime_env

    st = runtime_env.state("tflite-runtime")
    if st.ready:
        return st.folder / "bin" / "python"
    if st.state == "missing" and not os.environ.get("CI"):
        pytest.skip(st.line())
    pytest.fail(st.line())
