"""What a Pi user runs, on this machine: the rpi bundle under tflite-runtime 2.14 (its own numpy<2 venv) and
ai-edge-litert, the runtime/delegate each really used, one-line errors when numpy and the runtime do not fit, `verify`
without ai_edge_litert, and the merged board rows of the bench report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, ROOT

FACE = DATA / "utkface" / "images" / "100_0_0_20170112213500903.jpg.chip.jpg"

pytestmark = pytest.mark.slow  # full bundles, training or the data set: outside the fast tier


def cli(*args: str, cwd: Path = ROOT, py: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(
        [py, "-m", "c3ae_edge.cli", *args], capture_output=True, text=True, timeout=900, cwd=cwd, env=dict(os.environ)
    )


@pytest.fixture(scope="module")
def bundle(rpi_bundle: Path) -> Path:
    return rpi_bundle  # the session's shared rpi bundle (tests/conftest.py): copied before any change


def site_of(py: Path) -> Path:
    return Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )


def venv_with(tmp: Path, links: dict[str, Path]) -> Path:
    """A fresh venv (no pip, no system site-packages) seeing only ``links``: {importable name: the folder it lives
    in}."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True, timeout=120)
    py = tmp / "bin" / "python"
    site = site_of(py)
    for name, src in links.items():
        for p in [src / name, *src.glob(f"{name}-*.dist-info"), *src.glob(f"{name.replace('-', '_')}-*.dist-info")]:
            if p.exists() and not (site / p.name).exists():
                (site / p.name).symlink_to(p)
    return py


def run(py, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(py), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={"PATH": os.environ["PATH"]},
    )


def self_test(py, bundle: Path, *extra: str) -> list[dict]:
    r = run(py, bundle / "reference_infer.py", "--self-test", *extra, cwd=bundle)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
    rows = [json.loads(line)["self_test"] for line in r.stdout.splitlines()]
    assert len([x for x in r.stderr.splitlines() if not x.startswith("INFO: ")]) == len(
        rows
    )  # one summary line per artifact (+ the runtime's INFO)
    return rows


def test_tflite_metadata_reader_needs_no_schema(bundle: Path):
    """The struct-only reader gives what ai_edge_litert's flatbuffer utils give, and a broken file is one clear
    error."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from c3ae_edge.errors import DataError
    from c3ae_edge.export.backends.common import META_KEY
    from c3ae_edge.export.backends.tflite_backend import read_metadata
    from c3ae_edge.export.tflite_meta import read_metadata_bytes

    for f in (bundle / a["file"] for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]):
        m = fu.read_model(str(f))
        want = next(bytes(m.buffers[md.buffer].data) for md in m.metadata if md.name in (META_KEY, META_KEY.encode()))
        assert read_metadata_bytes(f.read_bytes(), META_KEY) == want
        assert read_metadata(f)["decode"]["w2"] and read_metadata_bytes(f.read_bytes(), "no such key") is None
    bad = bundle.parent / "bad.tflite"
    bad.write_bytes(next(bundle.glob("*int8.tflite")).read_bytes()[:4000])
    with pytest.raises(DataError, match="bad.tflite"):
        read_metadata(bad)


def test_verify_runs_with_only_tflite_runtime(tflite_runtime: Path, bundle: Path, tmp_path: Path):
    """`c3ae-edge verify` where ai_edge_litert cannot be imported and tflite_runtime (with its numpy<2) is the
    runtime."""
    rt_site = site_of(tflite_runtime)
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    for name in ("tflite_runtime", "numpy", "numpy.libs"):
        if (rt_site / name).exists():
            (shadow / name).symlink_to(rt_site / name)
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ai_edge_litert': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(shadow)!r})\n"
        "from c3ae_edge.cli import main\n"
        "sys.argv = ['c3ae-edge', 'verify', sys.argv[1]]\n"
        "try:\n    main()\n"
        "finally:\n"
        "    import numpy, tflite_runtime\n"
        "    print('RUNTIME', numpy.__version__, 'ai_edge_litert' in sys.modules, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "checksums OK" in r.stdout and "internal error" not in r.stderr, r.stderr[-800:]
    assert r.stderr.splitlines()[-1].startswith("RUNTIME 1.") and r.stderr.splitlines()[-1].endswith(" False"), (
        r.stderr[-800:]
    )  # numpy<2, no ai_edge_litert


def test_each_runtime_names_itself_and_the_delegate_that_ran(tflite_runtime: Path, bundle: Path, tmp_path: Path):
    """tflite-runtime 2.14 runs the int8 file on built-in kernels (never XNNPACK); ai-edge-litert on XNNPACK unless told
    not to. The self-test and the on-board runner report it; the runtime the export verified passes its tolerance."""
    man = json.loads((bundle / "manifest.json").read_text())
    int8 = next(a for a in man["artifacts"] if a["precision"] == "int8")
    got = {}
    for py, extra in ((sys.executable, ()), (sys.executable, ("--delegate", "builtin")), (tflite_runtime, ())):
        for row in self_test(py, bundle, *extra):
            got[(row["runtime_id"], row["artifact"])] = row
    ids = {k[0] for k in got if k[1] == int8["file"]}
    assert ids == {"ai-edge-litert/xnnpack", "ai-edge-litert/builtin", "tflite-runtime/builtin"}, ids
    assert got[("ai-edge-litert/xnnpack", int8["file"])]["passed"]
    for (rid, f), row in got.items():
        a = next(x for x in man["artifacts"] if x["file"] == f)
        verified = rid == "ai-edge-litert/xnnpack" or (a.get("runtimes") or {}).get(rid, {}).get("status") == "verified"
        assert row["faces"] == len(man["parity_set"]["pytorch_age"]) and len(row["ages"]) == row["faces"]
        if verified:
            assert row["passed"], row
    lit, tfl = got[("ai-edge-litert/builtin", int8["file"])], got[("tflite-runtime/builtin", int8["file"])]
    print(
        f"int8, {int8['file']}: ai-edge-litert builtin vs tflite-runtime 2.14 raw outputs identical: "
        f"{lit['output_sha256'] == tfl['output_sha256']}; max |age diff| "
        f"{max(abs(a - b) for a, b in zip(lit['ages'], tfl['ages'])):.4f}"
    )

    from c3ae_edge.board import onboard

    r = run(tflite_runtime, onboard.__file__, bundle, "--runs", "20", "--warmup", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)["results"]
    assert {(x["runtime"], x["delegate"]["name"], x["threads"]) for x in rows if x["precision"] == "int8"} == {
        ("tflite-runtime", "builtin", 1)
    }
    assert all(
        x["runtime_version"] == "2.14.0"
        and x["parity"]["faces"] == row["faces"]
        and x["parity"]["within_tolerance"] is not None
        for x in rows
    )


def test_one_line_when_numpy_and_runtime_do_not_fit(tflite_runtime: Path, bundle: Path, tmp_path: Path):
    """`pip install tflite-runtime` gives numpy 2; no runtime at all; no numpy: each is one line, no traceback."""
    rt_site = site_of(tflite_runtime)
    import numpy
    import PIL

    from c3ae_edge.board import onboard

    npy, pil = (
        Path(numpy.__file__).parents[1],
        Path(PIL.__file__).parents[1],
    )  # where this venv's numpy 2 and Pillow live
    assert int(numpy.__version__.split(".")[0]) >= 2
    ours = {"numpy": npy, "numpy.libs": npy, "PIL": pil, "pillow": pil, "pillow.libs": pil}
    cases = {
        "numpy2": (
            {**ours, "tflite_runtime": rt_site, "tflite-runtime": rt_site},
            f"tflite-runtime 2.14.0 needs numpy<2 but numpy {numpy.__version__} is installed",
        ),
        "noruntime": (ours, "no TFLite runtime is installed"),
        "nonumpy": ({}, "numpy' is not installed"),
    }
    for name, (links, words) in cases.items():
        py = venv_with(tmp_path / name, links)
        for script, args, code in (
            (bundle / "reference_infer.py", [FACE], (1, 2)),
            (Path(onboard.__file__), [bundle, "--runs", "5"], (1,)),
        ):
            r = run(py, script, *args, cwd=tmp_path)
            words = "numpy is not installed" if name == "nonumpy" and script.name == "onboard.py" else words
            assert r.returncode in code and r.stdout == "", (name, script.name, r.returncode, r.stdout[-500:])
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr and words in r.stderr, (
                name,
                script.name,
                r.stderr[-1500:],
            )


def test_merged_board_rows_show_runtime_age_check_and_no_fake_macc(tflite_runtime: Path, bundle: Path, tmp_path: Path):
    """The documented board command (default 1 thread) fills the merged Table 3; two runtimes on one board are two
    rows."""
    from c3ae_edge.board import onboard

    docs = []
    for py in (sys.executable, tflite_runtime):
        out = tmp_path / f"board-{len(docs)}.json"
        r = run(py, onboard.__file__, bundle, "--runs", "20", "--warmup", "2", "--json", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        docs.append(out)
    r = cli(
        "bench", "--merge", *map(str, docs), "--markdown", str(tmp_path / "m.md"), "--json", str(tmp_path / "m.json")
    )
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "m.md").read_text()
    t3 = md.split("## Table 3")[1].split("\n## ")[0]
    every = md.split("## Every row")[1].split("\n## ")[0]
    board = [line for line in t3.splitlines() if "[on-board runner]" in line]
    labels = sorted(x.split(" | ")[6].split("] ")[1] for x in board)
    assert len(board) == 2 and labels[0].startswith("ai-edge-litert ") and labels[1] == "tflite-runtime 2.14.0", t3
    assert all(x.split(" | ")[8].endswith(" ms") for x in board), (
        t3
    )  # best CPU p50: the 1-thread rows are there, not "-"
    rows = [line.split(" | ") for line in every.splitlines() if "[on-board runner]" in line]
    assert len(rows) == 4  # 2 runtimes x (int8, fp32)
    tolerance = {
        a["precision"]: a["tolerance_years"] for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]
    }
    from c3ae_edge.bench.report import ROWS_HEAD

    macc = [c.strip() for c in ROWS_HEAD[0].split("|")].index("MACC M (model / graph)") - 1  # by name, not position
    measured = sorted(
        (x["precision"], f"{x['parity']['max_abs_age_diff_vs_pytorch']:.4f}")
        for d in docs
        for x in json.loads(d.read_text())["results"]
    )
    assert sorted((c[3], c[-1].rstrip(" |")) for c in rows) == measured, (rows, measured)  # the runner's numbers
    for cells in rows:
        assert cells[macc] == "-", cells  # MACC: not measured by the board runner
        diff = float(cells[-1].rstrip(" |"))  # max age diff vs PyTorch, on the parity faces
        assert diff <= tolerance[cells[3]] and (diff > 0 or cells[3] == "fp32"), cells  # int8 ages differ a little
    ids = {(c[2].split("[")[1].split(" ")[0], c[3]) for c in rows}
    assert {("ai-edge-litert/xnnpack", "int8"), ("tflite-runtime/builtin", "int8")} <= ids, ids


def test_self_test_checks_golden_outputs_bit_for_bit(bundle: Path, tmp_path: Path):
    """--self-test against manifest golden outputs: exact ones pass, one int8 step off fails where the golden was
    recorded (this runtime, version, machine, SIMD flags), is information elsewhere; another runtime's are 'closest'."""
    import shutil

    import numpy as np

    from c3ae_edge.board import reference_infer as ri

    b = tmp_path / "bundle"
    shutil.copytree(bundle, b)
    man = json.loads((b / "manifest.json").read_text())
    art = next(a for a in man["artifacts"] if a["precision"] == "int8")
    it, info = ri.open_interpreter(b / art["file"], 1)
    assert info["runtime_id"] == "ai-edge-litert/xnnpack"
    m = dict(man, input=art["input"], output=dict(man["output"], **art.get("output", {})))
    raw = np.stack([ri.invoke(it, x, m)["logits"].reshape(-1) for x in ri.parity_inputs(b, man)])
    assert raw.dtype == np.int8 and raw.shape == (len(man["parity_set"]["pytorch_age"]), 12)

    def check(golden: dict) -> tuple[int, dict]:
        art["golden"] = golden
        (b / "manifest.json").write_text(json.dumps(man))
        r = run(sys.executable, b / "reference_infer.py", "--self-test", "--artifact", art["file"], cwd=b)
        return r.returncode, json.loads(r.stdout)["self_test"]

    assert (
        art["golden"]["ai-edge-litert/xnnpack"]["logits"]["values"] == raw.tolist()
    )  # what the export recorded, as it runs here
    entry = {"logits": {"dtype": "int8", "shape": list(raw.shape), "values": raw.tolist()}}
    rc, res = check({"ai-edge-litert/xnnpack": entry})
    assert rc == 0 and res["bit_exact"] and res["values_differing"] == 0
    off = raw.astype(np.int16)
    off[3, 5] += 1 if off[3, 5] < 127 else -1  # stay inside int8
    rc, res = check({"ai-edge-litert/xnnpack": {"logits": {**entry["logits"], "values": off.tolist()}}})
    assert rc == 1 and not res["bit_exact"] and res["values_differing"] == 1 and res["max_abs_diff"] == 1.0
    off[0, 0] += 2 if off[0, 0] < 126 else -2
    rc, res = check({"tflite-runtime/builtin": {"logits": {**entry["logits"], "values": off.tolist()}}})
    assert (
        rc == 0
        and res["golden"].startswith("none for ai-edge-litert/xnnpack ")
        and res["closest"] == "tflite-runtime/builtin"
        and res["max_abs_diff"] == 2.0
    )
    # one step off again, but recorded elsewhere (a Pi, another runtime version): information, not a failure
    one = raw.astype(np.int16)
    one[3, 5] += 1 if one[3, 5] < 127 else -1
    site = art["golden_recorded"]["ai-edge-litert/xnnpack"]
    assert site["machine"] and site["version"] and site["runtime_id"] == "ai-edge-litert/xnnpack", site
    for elsewhere in ({**site, "machine": "aarch64", "simd": ["asimd", "fp"]}, {**site, "version": "2.1.0"}):
        art["golden_recorded"] = {"ai-edge-litert/xnnpack": elsewhere}
        rc, res = check({"ai-edge-litert/xnnpack": {"logits": {**entry["logits"], "values": one.tolist()}}})
        assert rc == 0 and res["passed"] and "bit_exact" not in res, res
        assert res["closest"] == "ai-edge-litert/xnnpack" and res["values_differing"] == 1, res
    art["golden_recorded"] = {"ai-edge-litert/xnnpack": site}  # recorded right here: the same step fails
    rc, res = check({"ai-edge-litert/xnnpack": {"logits": {**entry["logits"], "values": one.tolist()}}})
    assert rc == 1 and not res["bit_exact"] and res["values_differing"] == 1


def test_bundle_readme_says_what_to_install(bundle: Path):
    text = (bundle / "README.md").read_text()
    assert (
        'pip install "numpy<2" Pillow tflite-runtime==2.14.0' in text
        and "pip install numpy Pillow ai-edge-litert" in text
    )
    assert "**Trixie** (Debian 13, Python 3.13)" in text and "reference_infer.py --self-test" in text
