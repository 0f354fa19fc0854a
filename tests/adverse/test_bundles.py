"""Adverse bundles given to ``verify``: tampered files, a manifest edited (and SHA256SUMS regenerated, as an attacker
would), paths that leave the bundle, stray files, pickled arrays, hostile archives."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest

from .conftest import Case, copy_bundle, resum, run_case


def _b(tmp, env):
    return copy_bundle(env["bundle"], tmp / "b")


def _edit(fn, sums: bool = True):
    """Copy the bundle, apply ``fn(bundle)``, regenerate SHA256SUMS (unless ``sums`` is False), verify it."""

    def setup(tmp, env):
        b = _b(tmp, env)
        fn(b)
        if sums:
            resum(b)
        return ["verify", str(b)]

    return setup


def _man(fn):
    def edit(b):
        m = json.loads((b / "manifest.json").read_text())
        fn(m)
        (b / "manifest.json").write_text(json.dumps(m))

    return _edit(edit)


def _art(**kw):
    return _man(lambda m: m["artifacts"][0].update(kw))


def _flip(b):
    p = b / "c3ae_full_fp32.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _other_model(b, sha: bool = False, tol: float | None = None):
    """Replace the ONNX with a working model of other weights (one initializer scaled)."""
    import onnx
    from onnx import numpy_helper

    p = b / "c3ae_full_fp32.onnx"
    m = onnx.load(str(p))
    init = next(i for i in m.graph.initializer if numpy_helper.to_array(i).ndim == 2)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, init.name))
    p.write_bytes(m.SerializeToString())
    if sha or tol is not None:
        from c3ae_edge.export.bundle_check import sha256

        man = json.loads((b / "manifest.json").read_text())
        man["artifacts"][0]["sha256"] = sha256(p)
        if tol is not None:
            man["artifacts"][0]["tolerance_years"] = tol
        (b / "manifest.json").write_text(json.dumps(man))


def _sums_line(line: str):
    def edit(b):
        with open(b / "SHA256SUMS", "a") as f:
            f.write(line)

    return _edit(edit, sums=False)


def _outside_target(tmp):
    (tmp / "outside.npy").write_bytes((tmp / "b" / "parity_crops.npy").read_bytes())


def _parity_outside(tmp, env):
    b = _b(tmp, env)
    _outside_target(tmp)
    m = json.loads((b / "manifest.json").read_text())
    m["parity_set"]["file"] = "../outside.npy"
    (b / "manifest.json").write_text(json.dumps(m))
    resum(b)
    return ["verify", str(b)]


def _symlinked_parity(tmp, env):
    b = _b(tmp, env)
    _outside_target(tmp)
    (b / "parity_crops.npy").unlink()
    (b / "parity_crops.npy").symlink_to(tmp / "outside.npy")
    resum(b)
    return ["verify", str(b)]


def _npy(arr, allow_pickle=False):
    def edit(b):
        np.save(b / "parity_crops.npy", arr, allow_pickle=allow_pickle)

    return _edit(edit)


def _tar(members):
    """A .tar.gz holding ``members``: (name, bytes | None for a folder | 'link:target')."""

    def setup(tmp, env):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for name, data in members(env["bundle"]):
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                elif isinstance(data, str):
                    info.type, info.linkname = tarfile.SYMTYPE, data[5:]
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        (tmp / "x.tar.gz").write_bytes(buf.getvalue())
        return ["verify", str(tmp / "x.tar.gz")]

    return setup


def _files(bundle, top="x"):
    return [(f"{top}/{p.name}", p.read_bytes()) for p in sorted(bundle.iterdir())]


def _tampered_member(bundle):
    out = _files(bundle)
    return [(n, d if not n.endswith(".onnx") else d[:-1] + b"\x00") for n, d in out]


CASES = [
    Case("folder-missing", lambda tmp, env: ["verify", str(tmp / "nope")], 2, ("nope", "no such bundle")),
    Case("not-a-bundle", lambda tmp, env: ((tmp / "e").mkdir(), ["verify", str(tmp / "e")])[1], 3, ("SHA256SUMS",)),
    Case("artifact-byte-flipped", _edit(_flip, sums=False), 3, ("checksum mismatch", "c3ae_full_fp32.onnx")),
    Case(
        "stray-file",
        _edit(lambda b: (b / "extra.bin").write_bytes(b"x"), sums=False),
        3,
        ("not in SHA256SUMS", "extra.bin"),
    ),
    Case("stray-folder", _edit(lambda b: (b / "sub").mkdir(), sums=True), 3, ("not in SHA256SUMS", "sub/")),
    Case(
        "stray-folder-with-file",
        _edit(lambda b: ((b / "sub").mkdir(), (b / "sub" / "x.onnx").write_bytes(b"x"))),
        3,
        ("sub/",),
    ),
    Case(
        "listed-file-missing",
        _edit(lambda b: (b / "c3ae_model.h").unlink(), sums=False),
        3,
        ("c3ae_model.h", "missing"),
    ),
    Case("sums-absolute-name", _sums_line("0" * 64 + "  /etc/hostname\n"), 3, ("/etc/hostname", "leaves")),
    Case("sums-dotdot-name", _sums_line("0" * 64 + "  ../outside.txt\n"), 3, ("../outside.txt", "leaves")),
    Case("sums-subfolder-name", _sums_line("0" * 64 + "  sub/x\n"), 3, ("sub/x",)),
    Case("sums-malformed-line", _sums_line("not a checksum line\n"), 3, ("SHA256SUMS line",)),
    Case(
        "sums-duplicate",
        _edit(lambda b: (b / "SHA256SUMS").write_text((b / "SHA256SUMS").read_text() * 2), sums=False),
        3,
        ("twice",),
    ),
    Case(
        "sums-not-utf8",
        _edit(lambda b: (b / "SHA256SUMS").write_bytes(b"\xff\xfe"), sums=False),
        3,
        ("SHA256SUMS", "utf-8"),
    ),
    Case(
        "sums-16mb",
        _edit(lambda b: (b / "SHA256SUMS").write_bytes(b"#" * (17 << 20)), sums=False),
        3,
        ("SHA256SUMS", "too large"),
    ),
    Case(
        "manifest-not-json",
        _edit(lambda b: (b / "manifest.json").write_text("{oops")),
        3,
        ("manifest.json", "not valid json"),
    ),
    Case(
        "manifest-not-utf8",
        _edit(lambda b: (b / "manifest.json").write_bytes(b"{\xff}")),
        3,
        ("manifest.json", "utf-8"),
    ),
    Case("manifest-a-list", _edit(lambda b: (b / "manifest.json").write_text("[1]")), 3, ("manifest.json",)),
    Case(
        "schema-wrong",
        _man(lambda m: m.update(schema="other/9")),
        3,
        ("manifest.json", "schema") if False else ("manifest.json",),
    ),
    Case("no-artifacts-key", _man(lambda m: m.pop("artifacts")), 3, ("manifest.json", "'artifacts'")),
    Case("artifacts-a-string", _man(lambda m: m.update(artifacts="c3ae_full_fp32.onnx")), 3, ("'artifacts'",)),
    Case("artifacts-empty", _man(lambda m: m.update(artifacts=[])), 3, ("no artifacts",)),
    Case("no-target", _man(lambda m: m.pop("target")), 3, ("'target'",)),
    Case("backend-unknown", _man(lambda m: m["target"].update(backend="caffe")), 3, ("caffe",)),
    Case("no-crop", _man(lambda m: m.pop("crop")), 3, ("'crop'",)),
    Case("crop-size-str", _man(lambda m: m["crop"].update(size="64")), 3, ("crop",)),
    Case("crop-unknown-key", _man(lambda m: m["crop"].update(flip=True)), 3, ("crop",)),
    Case("tolerance-missing", _man(lambda m: m["artifacts"][0].pop("tolerance_years")), 3, ("'tolerance_years'",)),
    Case("tolerance-100", _art(tolerance_years=100), 3, ("tolerance 100", "fp32")),
    Case("tolerance-1e308", _art(tolerance_years=1e308), 3, ("tolerance 1e+308",)),
    Case(
        "tolerance-NaN",
        _edit(
            lambda b: (b / "manifest.json").write_text(
                (b / "manifest.json").read_text().replace('"tolerance_years": 0.01', '"tolerance_years": NaN', 1)
            )
        ),
        3,
        ("manifest.json", "nan"),
    ),
    Case(
        "tolerance-Infinity",
        _edit(
            lambda b: (b / "manifest.json").write_text(
                (b / "manifest.json").read_text().replace('"tolerance_years": 0.01', '"tolerance_years": Infinity', 1)
            )
        ),
        3,
        ("infinity",),
    ),
    Case("tolerance-negative", _art(tolerance_years=-1), 3, ("tolerance -1",)),
    Case("tolerance-a-string", _art(tolerance_years="0.01"), 3, ("'tolerance_years'",)),
    Case("precision-unknown", _art(precision="fp8"), 3, ("fp8",)),
    Case("artifact-file-absolute", _art(file="/etc/hostname"), 3, ("/etc/hostname", "leaves")),
    Case("artifact-file-dotdot", _art(file="../b/c3ae_full_fp32.onnx"), 3, ("../b/c3ae_full_fp32.onnx", "leaves")),
    Case("artifact-file-not-str", _art(file=["x"]), 3, ("'file'",)),
    Case("artifact-files-dotdot", _art(files=["c3ae_full_fp32.onnx", "../../etc/passwd"]), 3, ("leaves",)),
    Case("artifact-sha-missing", _man(lambda m: m["artifacts"][0].pop("sha256")), 3, ("'sha256'",)),
    Case("swapped-model", _edit(_other_model), 3, ("c3ae_full_fp32.onnx", "does not match its sha256")),
    Case("swapped-model-sha-and-tolerance-100", _edit(lambda b: _other_model(b, tol=100.0)), 3, ("tolerance 100",)),
    Case(
        "swapped-model-sha-updated", _edit(lambda b: _other_model(b, sha=True)), 3, ("c3ae_full_fp32.onnx", "max |age")
    ),
    Case("parity-file-dotdot", _parity_outside, 3, ("../outside.npy", "leaves")),
    Case("parity-symlink-out", _symlinked_parity, 3, ("parity_crops.npy", "link")),
    Case(
        "parity-pickled-npy",
        _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True),
        3,
        ("parity_crops.npy", "not a plain .npy"),
    ),
    Case("parity-not-npy", _edit(lambda b: (b / "parity_crops.npy").write_bytes(b"garbage")), 3, ("parity_crops.npy",)),
    Case("parity-wrong-dtype", _npy(np.zeros((3, 3, 64, 64, 3), np.float32)), 3, ("parity_crops.npy", "uint8")),
    Case("parity-wrong-count", _npy(np.zeros((2, 3, 64, 64, 3), np.uint8)), 3, ("parity_crops.npy", "shape")),
    Case(
        "parity-ages-strings", _man(lambda m: m["parity_set"].update(pytorch_age=["1", "2", "3"])), 3, ("pytorch_age",)
    ),
    Case("parity-ages-empty", _man(lambda m: m["parity_set"].update(pytorch_age=[])), 3, ("pytorch_age",)),
    Case(
        "tar-not-gzip",
        lambda tmp, env: ((tmp / "x.tar.gz").write_text("plain text"), ["verify", str(tmp / "x.tar.gz")])[1],
        3,
        ("x.tar.gz",),
    ),
    Case(
        "tar-dotdot-member", _tar(lambda b: [*_files(b), ("x/../../evil.txt", b"x")]), 3, ("x.tar.gz", "../../evil.txt")
    ),
    Case(
        "tar-absolute-member", _tar(lambda b: [*_files(b), ("/tmp/evil.txt", b"x")]), 3, ("x.tar.gz", "/tmp/evil.txt")
    ),
    Case("tar-symlink-member", _tar(lambda b: [*_files(b), ("x/link", "link:/etc/passwd")]), 3, ("x.tar.gz", "link")),
    Case("tar-folder-member", _tar(lambda b: [("x", None), *_files(b)]), 3, ("x.tar.gz", "not a regular file")),
    Case("tar-two-bundles", _tar(lambda b: [*_files(b), *_files(b, "y")]), 3, ("x.tar.gz", "exactly one")),
    Case("tar-nested-member", _tar(lambda b: [*_files(b), ("x/sub/f", b"x")]), 3, ("x.tar.gz", "x/sub/f")),
    Case("tar-empty", _tar(lambda b: []), 3, ("x.tar.gz",)),
    Case("tar-tampered-member", _tar(_tampered_member), 3, ("x.tar.gz:x", "checksum mismatch")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_bundle(case, tmp_path, capsys, env, tiny_bundle):
    env["bundle"] = tiny_bundle
    run_case(case, tmp_path, capsys, env)


def test_good_bundle_and_its_archive_verify(tiny_bundle, cli):
    """The bundle the suite spoils is itself good, exported with 3 verification faces (fewer than 8), and so is its
    archive."""
    man = json.loads((tiny_bundle / "manifest.json").read_text())
    assert man["verification"]["faces"] == 3 and man["parity_set"]["shape"][0] == 3
    r = cli("verify", str(tiny_bundle))
    assert r.code == 0 and "checksums OK" in r.out, r.err
    r = cli("verify", str(tiny_bundle) + ".tar.gz")
    assert r.code == 0 and "checksums OK" in r.out, r.err


def test_hashing_streams(tmp_path):
    """A huge sparse file hashes in flat memory (a 40 GB one gave MemoryError when it was read whole)."""
    import tracemalloc

    from c3ae_edge.export.bundle_check import sha256

    p = tmp_path / "sparse.bin"
    with open(p, "wb") as f:
        f.truncate(256 << 20)
    tracemalloc.start()
    try:
        assert sha256(p) == "a6d72ac7690f53be6ae46ba88506bd97302a093f7108472bd9efc3cefda06484"  # 256 MiB of zeros
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_tolerance_caps_come_from_the_code():
    from c3ae_edge.export.parity import FP16_PARITY, FP32_PARITY, INT8_TOLERANCE_CAP, tolerance, tolerance_cap

    assert tolerance_cap("fp32") == FP32_PARITY and tolerance_cap("fp16") == FP16_PARITY
    assert (
        tolerance_cap("int8") == INT8_TOLERANCE_CAP == tolerance("int8", 1e9)
        and tolerance("int8", 0.5) <= INT8_TOLERANCE_CAP
    )


def test_check_sums_reexported_from_verify():
    from c3ae_edge.export import bundle_check, verify

    assert verify.check_sums is bundle_check.check_sums


def test_reference_infer_stays_in_its_bundle(tmp_path, tiny_bundle):
    """The shipped reference_infer.py refuses an artifact path that leaves the bundle (it loaded the outside file)."""
    import subprocess
    import sys

    from c3ae_edge.board import reference_infer

    from .conftest import face_chip

    b = copy_bundle(tiny_bundle, tmp_path / "b")
    shutil.copyfile(reference_infer.__file__, b / "reference_infer.py")  # as a TFLite bundle ships it
    m = json.loads((b / "manifest.json").read_text())
    m["artifacts"][0]["file"] = "../evil.tflite"
    (b / "manifest.json").write_text(json.dumps(m))
    (tmp_path / "evil.tflite").write_bytes(b"x")
    r = subprocess.run(
        [sys.executable, str(b / "reference_infer.py"), str(face_chip())], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and r.stderr.strip() == "../evil.tflite: not a file of this bundle", r.stderr


def test_onboard_runner_stays_in_its_bundle(tmp_path, tiny_bundle):
    """The standalone on-board runner refuses manifest paths that leave the bundle (parity file and artifacts)."""
    import subprocess
    import sys

    from c3ae_edge.board import onboard

    for key in ("parity", "artifact"):
        b = copy_bundle(tiny_bundle, tmp_path / key)
        m = json.loads((b / "manifest.json").read_text())
        if key == "parity":
            m["parity_set"]["file"] = "../outside.npy"
        else:
            m["artifacts"][0]["file"] = "/etc/hostname"
        (b / "manifest.json").write_text(json.dumps(m))
        np.save(tmp_path / "outside.npy", np.zeros((1, 3, 64, 64, 3), np.uint8))
        r = subprocess.run(
            [sys.executable, onboard.__file__, str(b), "--runs", "1", "--warmup", "0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and "not a file of the bundle" in r.stderr and "Traceback" not in r.stderr, r.stderr
