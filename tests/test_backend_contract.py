"""The backend contract, checked for every backend in the registry (a new backend is covered by registering it).

Each backend exports ``c3ae_plain`` at fp32 (tflm exports int8 only, so it is checked at int8, against the per-face
int8 bar every target holds int8 to), its runner loads the file, the ages match PyTorch's on real faces (the embedded
default faces: no data set needed) under every runtime of the backend that is usable here, and ``io()`` describes
exactly the tensors ``raw()`` returns. Backends the host bench times also run their bench forward and graph report.
"""

from __future__ import annotations

import importlib.util
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from c3ae_edge.export.registry import get_backend, list_backends

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = [s.name for s in list_backends()]
N_FACES, N_CAL = 6, 32  # parity faces; calibration faces for a backend that has no fp32 (32: the export's minimum)


def precision_for(spec) -> str:
    """fp32 where the backend has it, else its first (smallest-error) precision: tflm is int8 only."""
    return "fp32" if "fp32" in spec.precisions else spec.precisions[0]


def bar(precision: str) -> float:
    from c3ae_edge.export.parity import FP16_PARITY, FP32_PARITY
    from c3ae_edge.export.targets import MAX_INT8_FACE_MAX

    return {"fp32": FP32_PARITY, "fp16": FP16_PARITY}.get(precision, MAX_INT8_FACE_MAX)


@pytest.fixture(scope="module")
def plain():
    """c3ae_plain with its shipped weights, real faces in its input layout, PyTorch's ages, calibration faces."""
    import torch

    from c3ae_edge.data.facedata import FaceData
    from c3ae_edge.export import default_faces
    from c3ae_edge.weights import load_model

    model, spec, _ = load_model(None, "c3ae_plain")
    model.eval()

    def crops(role: str, n: int) -> np.ndarray:
        samples = default_faces.samples(role)
        picked = [samples[i] for i in np.linspace(0, len(samples) - 1, n).astype(int)]  # spread over the list
        return FaceData(picked, spec, threads=2).batch(range(n))[0].numpy()

    x = crops("verification", N_FACES)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().reshape(-1)
    return model, x, ref, crops("calibration", N_CAL)


@pytest.fixture(scope="module")
def exported(plain, tmp_path_factory):
    """backend name -> (artifact, precision), each exported once for the module by the conversion step export and the
    bench share (``record=True``: (its Converted record, precision))."""
    from c3ae_edge.export.backends.common import head_weights
    from c3ae_edge.export.convert import convert

    model, x, _, cal = plain
    cache: dict[str, tuple] = {}

    def get(name: str, record: bool = False) -> tuple:
        if name not in cache:
            be = get_backend(name)
            missing = [m for m in be.spec.requires if importlib.util.find_spec(m) is None]
            if missing:
                pytest.skip(f"{name}: pip extra '{be.spec.extra}' not installed ({', '.join(missing)})")
            prec = precision_for(be.spec)
            out = tmp_path_factory.mktemp(name)
            opts = {"stem": "plain", "metadata": {"decode": head_weights(model)}}
            cache[name] = (convert(be, model, x[:1], out, prec, cal, opts), prec)
        conv, prec = cache[name]
        return (conv, prec) if record else (conv.path, prec)

    return get


def test_specs_are_complete():
    """Every row names a suffix, its imports, a pip extra that pyproject defines, runtimes with unique ids."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert len(set(BACKENDS)) == len(BACKENDS) >= 4
    for s in list_backends():
        be = get_backend(s.name)
        assert s.suffix.startswith(".") and s.precisions and s.requires, s.name
        assert s.extra in extras, f"{s.name}: pip extra {s.extra!r} missing from pyproject.toml"
        ids = [rt.id for rt in be.runtimes]
        assert ids and len(set(ids)) == len(ids), s.name
        assert all(i.startswith(rt.package + "/") for i, rt in zip(ids, be.runtimes)), s.name
        assert set(s.runtimes) <= {rt.package for rt in be.runtimes} | {"tflite_runtime"}, s.name
        if be.bench is not None:
            assert set(be.bench.conversion_ops) == {"transpose", "quantize", "dequantize"} and be.bench.options, s.name
            assert set(be.bench.run_as.values()) <= set(s.precisions), s.name


@pytest.mark.parametrize("name", BACKENDS)
def test_export_load_parity_io(name, plain, exported):
    be = get_backend(name)
    _, x, ref, _ = plain
    path, prec = exported(name)
    usable = [rt for rt in be.runtimes if rt.missing() is None]
    assert be.runtimes[0] in usable, f"{name}: its default runtime is not usable here: {be.runtimes[0].missing()}"
    default = be.load(path, 1)
    for runner in [default] + [rt.open(path, 1) for rt in usable]:
        ages = np.asarray(runner.run(x)["age"], np.float64)
        assert ages.shape == (len(x),), name
        d = float(np.abs(ages - ref).max())
        assert d <= bar(prec), f"{name} {prec}: max |age - PyTorch age| {d:.4f} > {bar(prec)} years"
        check_io(runner, x, prec)


@pytest.mark.parametrize("name", BACKENDS)
def test_converted_records_every_file_it_wrote(name, exported):
    """The conversion step's record names exactly the files the converter wrote (the artifact first, then the sidecar
    its format has) and their bytes: what a bundle's manifest and a bench row report."""
    conv, _ = exported(name, record=True)
    sidecar = get_backend(name).spec.options.get("sidecar")
    assert conv.files[0] == conv.path.name and len(conv.files) == (2 if sidecar else 1), conv
    assert sorted(conv.files) == sorted(p.name for p in conv.path.parent.iterdir()), conv
    assert conv.bytes == sum((conv.path.parent / f).stat().st_size for f in conv.files) > 0
    assert conv.seconds > 0


def check_io(runner, x: np.ndarray, prec: str) -> None:
    """io() names the runner's tensors, with the dtypes and shapes raw() really returns; one face's input fits."""
    io = runner.io()
    inp, outs = io["input"], io["outputs"]
    assert inp["name"] == runner.input_name and [o["name"] for o in outs] == list(runner.output_names)
    per_call = math.prod(inp["shape"][1:]) * inp.get("invocations_per_face", 1)
    assert inp["shape"][0] in (-1, 1) and per_call == math.prod(x.shape[1:]), inp
    assert inp["layout"] in ("NCHW", "NSCHW", "NHWC", "NSHWC")
    want_dtype = "float32" if prec in ("fp32", "fp16") else "int8"
    assert inp["dtype"] == want_dtype, inp
    if inp["dtype"] != "float32":
        assert inp["scale"] > 0 and isinstance(inp["zero_point"], int)
    raw = runner.raw(x[:2])
    assert list(raw) == list(runner.output_names)
    for o in outs:
        got = raw[o["name"]]
        assert str(got.dtype) == o["dtype"], (o, got.dtype)
        assert o["shape"][0] in (-1, 1), o  # a dynamic batch, or a batch-1 graph that raw() calls once per face
        if "invocations_per_face" in inp:  # one call per crop: raw() stacks the crops of each face
            assert list(got.shape) == [2, inp["invocations_per_face"], *o["shape"][1:]], (o, got.shape)
        else:
            assert list(got.shape) == [2, *o["shape"][1:]], (o, got.shape)


@pytest.mark.parametrize("name", [n for n in BACKENDS if get_backend(n).bench is not None])
def test_bench_forward_and_graph(name, plain, exported):
    """The bench's timed call computes the batch it is given; the graph report counts what the graph holds."""
    from c3ae_edge.bench import graph
    from c3ae_edge.bench.forward import artifact_forward, output_batch

    _, x, _, _ = plain
    path, prec = exported(name)
    fwd = artifact_forward(name, path, 1, prec, 1)
    assert output_batch(fwd(np.ascontiguousarray(x[:1]))) == 1
    r = graph.report(name, path, 0, 1)
    assert "error" not in r, r
    assert r["ops"] and r["nodes"] == sum(r["ops"].values()) and r["macc"] > 0, r
    assert set(r["added_by_conversion"]) == {"transpose", "quantize", "dequantize"}


def _targets() -> list[str]:
    from c3ae_edge.export.targets import builtin

    return sorted(builtin())


@pytest.mark.parametrize("target", _targets())
def test_every_builtin_target_runs_on_its_backend(target, plain, exported):
    """Each board profile names a registered backend, precisions it exports and runtimes it has; the backend's
    artifact runs under each of those runtimes usable here, with the board's thread count, within the parity bar.
    A runtime this machine lacks (CUDA) must say why in one line, not vanish."""
    from c3ae_edge.export.targets import builtin

    t = builtin()[target]
    be = get_backend(t.backend)
    assert set(t.precisions) <= set(be.spec.precisions), t
    by_id = {rt.id: rt for rt in be.runtimes}
    assert t.runtimes and set(t.runtimes) <= set(by_id), (t.runtimes, sorted(by_id))
    _, x, ref, _ = plain
    path, prec = exported(t.backend)
    ran = 0
    for rid in t.runtimes:
        why = by_id[rid].missing()
        if why is not None:
            assert isinstance(why, str) and why.strip() and "\n" not in why.strip(), (rid, why)
            continue
        ages = np.asarray(by_id[rid].open(path, t.threads).run(x)["age"], np.float64)
        assert float(np.abs(ages - ref).max()) <= bar(prec), (target, rid)
        ran += 1
    assert ran, f"{target}: none of {t.runtimes} is usable on this machine"
