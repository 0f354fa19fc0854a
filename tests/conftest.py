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


@pytest.fixture(scope="session")
def cortex_m_bundle(tmp_path_factory) -> Path:
    """`export --target cortex-m` (its default engine: the generated C99 one) with 60 + 60 faces: the one conversion
    the microcontroller tests share (test_engine.py; test_mcu.py derives the --engine tflm bundle from it)."""
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed (pip extra 'mcu'): MCU targets not tested")
    from c3ae_edge.export.bundle import export_bundle
    from c3ae_edge.export.engine.host import host_cc

    engine = None if host_cc() else "tflm"  # no host C compiler: the engine cannot be built, TFLM still can
    out = tmp_path_factory.mktemp("mcu")
    return export_bundle("cortex-m", out=out, n_cal=60, n_verify=60, engine=engine, log=lambda *_: None)


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
    complete root, or -m aarch64), never by default."""
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


@pytest.fixture(scope="session")
def fresh_rpi_export(tmp_path_factory, tflite_runtime) -> FreshExport:
    """THE rpi bundle of a test run: ``c3ae-edge export --target rpi`` and nothing else, as a newcomer runs it: a fresh
    folder, the embedded faces (no C3AE_DATA, no ../shared/data beside it), both runtimes of the target prepared;
    SOURCE_DATE_EPOCH pins the build time. Exported once and shared by test_export, test_docs' README tour,
    test_release (a signed copy), test_board_runtimes, test_runner, test_bundle_detector and test_aarch64: tests copy
    it before they change anything."""
    cwd = tmp_path_factory.mktemp("fresh-rpi")
    env = {k: v for k, v in os.environ.items() if k != "C3AE_DATA"} | {"SOURCE_DATE_EPOCH": "1700000000"}
    r = cli_subprocess(*FRESH_RPI_EXPORT, cwd=cwd, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    return FreshExport(cwd, cwd / "exports" / "c3ae_full-0.1.0-rpi4", r)


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
