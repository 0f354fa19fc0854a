"""TFLite via litert-torch: fp32 (float I/O) and full-integer int8 (PT2E, int8 I/O), NHWC input, run by ai-edge-litert.
The one interpreter opener of the package (``open_interpreter``: ai-edge-litert, else tflite-runtime) serves the
runners, the bench forward and the graph report; the bundles' standalone scripts (c3ae_edge/board) keep their own."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from c3ae_edge.errors import DataError, MissingExtraError, require
from c3ae_edge.export.backends.base import BackendSpec, BenchSupport, Runtime
from c3ae_edge.export.backends.common import META_KEY, decode_outputs, meta_json, module_missing

SPEC = BackendSpec(
    name="tflite",
    suffix=".tflite",
    precisions=("fp32", "int8"),
    runtimes=("ai-edge-litert", "tflite_runtime"),
    extra="tflite",
    description="TFLite flatbuffer, NHWC input; int8 = full-integer (int8 I/O, "
    "per-channel) up to W1: softmax and W2 run in float on the host",
    options={"layout": "NHWC"},
    requires=("litert_torch", "ai_edge_litert"),
    toolchain=("litert-torch", "ai-edge-litert"),
)


def _convert(
    model, example: np.ndarray, precision: str, calibration: np.ndarray | None, int8_head: str = "logits"
) -> bytes:
    import torch

    require("litert_torch", "tflite")
    import litert_torch

    from c3ae_edge.export.deploy import DeployModule

    cascade = bool(getattr(model, "cascade", False))
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(example[:1], -3, -1), np.float32))
    if precision == "fp32":
        return litert_torch.convert(DeployModule(model, channels_last=True).eval(), (x,)).model_content()
    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 needs calibration data")
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    head = int8_head
    dm = DeployModule(
        model,
        channels_last=True,
        aten_softmax=cascade,
        bins_only=cascade and head == "bins",
        logits_only=cascade and head == "logits",
    ).eval()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    g = prepare_pt2e(torch.export.export(dm, (x,), strict=True).module(), quantizer)
    cal = torch.from_numpy(np.ascontiguousarray(np.moveaxis(calibration, -3, -1), np.float32))
    with torch.no_grad():
        for i in range(len(cal)):  # the exported graph is specialised to batch 1
            g(cal[i : i + 1])
    g = convert_pt2e(g, fold_quantize=False)
    return litert_torch.convert(g, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).model_content()


def finish(flat: bytes, out_names: list[str], meta: dict | None) -> bytes:
    """Short tensor names (the converter's are long Python paths), named I/O, our metadata; keeps the file small."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(flat))
    g = m.subgraphs[0]
    sig = m.signatureDefs[0] if m.signatureDefs else None
    outs = sorted(sig.outputs, key=lambda t: t.name) if sig else []  # output_0, output_1: the torch tuple order
    io = {g.inputs[0]: "input"}
    for t, name in zip(outs, out_names):
        io[t.tensorIndex] = name
        t.name = name
    if sig:
        sig.inputs[0].name = "input"
    for i, t in enumerate(g.tensors):
        t.name = io.get(i, f"t{i}")
    keep = [md for md in (m.metadata or []) if md.name != b"keep_stablehlo_constant"]
    if meta:
        buf = schema.BufferT()
        buf.data = np.frombuffer(meta_json(meta).encode(), np.uint8)
        m.buffers.append(buf)
        md = schema.MetadataT()
        md.name, md.buffer = META_KEY, len(m.buffers) - 1
        keep.append(md)
    m.metadata = keep
    return bytes(fu.convert_object_to_bytearray(m))


class TFLiteBackend:
    spec = SPEC

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        return RUNTIMES

    @property
    def bench(self) -> BenchSupport:
        return BENCH

    def export(
        self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict
    ) -> Path:
        out = Path(out_dir) / f"{options.get('stem', 'model')}_{precision}{SPEC.suffix}"
        cascade = bool(getattr(model, "cascade", False))
        head = options.get("int8_head", "logits")  # measured: ending at W1 loses less than ending at the softmax
        names = ([head] if precision == "int8" else ["age", "bins"]) if cascade else ["age"]
        out.write_bytes(finish(_convert(model, example, precision, calibration, head), names, options.get("metadata")))
        return out

    def load(self, path: Path, threads: int | None = None, options: dict | None = None):
        return TFLiteRunner(path, threads)


def interpreter_class(package: str | None = None):
    """ai-edge-litert's Interpreter, or tflite_runtime's on a board that only has that (``package`` forces one)."""
    if package in (None, "ai-edge-litert"):
        try:
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter
        except ImportError:
            if package:
                raise MissingExtraError("tflite", "ai_edge_litert") from None
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        raise MissingExtraError("tflite", "ai_edge_litert") from None
    return Interpreter


def open_interpreter(path: Path, threads: int | None = None, package: str | None = None, delegate: str = "xnnpack"):
    """THE interpreter of c3ae-edge, allocated; ``package`` forces ai-edge-litert or tflite-runtime (default: the
    first installed); ``delegate="builtin"`` turns off the default XNNPACK delegate (built-in kernels)."""
    cls = interpreter_class(package)
    kw = {}
    if delegate == "builtin":
        mod = __import__(cls.__module__, fromlist=["OpResolverType"])
        kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    from c3ae_edge.native_quiet import drop_runtime_info

    with drop_runtime_info():  # the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line
        it = cls(model_path=str(path), num_threads=threads or 1, **kw)
        it.allocate_tensors()
    return it


def ran_as(it) -> str:
    """The runtime and the delegate that really run the graph, as the board's self-test names them: one DELEGATE node
    per XNNPACK partition in the execution plan, none when every op is a built-in kernel."""
    pkg = "tflite-runtime" if type(it).__module__.startswith("tflite_runtime") else "ai-edge-litert"
    try:
        parts = sum(1 for o in it._get_ops_details() if o["op_name"] == "DELEGATE")
    except Exception:  # a runtime without the introspection call
        return f"{pkg}/unknown"
    return f"{pkg}/{'xnnpack' if parts else 'builtin'}"


def read_metadata(path: Path) -> dict:
    """Our JSON metadata embedded in a .tflite file ({} if none); a plain flatbuffer read, so a board with only
    tflite_runtime (no ai_edge_litert schema) decodes the head too."""
    from c3ae_edge.export.tflite_meta import read_metadata_file

    try:
        raw = read_metadata_file(path, META_KEY)
    except ValueError as e:
        raise DataError(f"{path}: not a readable TFLite file ({e})") from None
    return json.loads(raw.decode()) if raw else {}


class TFLiteRunner:
    """Interpreter over an artifact: takes NCHW float crops like every runner, quantises if the input is int8."""

    def __init__(self, path: Path, threads: int | None = None, package: str | None = None, delegate: str = "xnnpack"):
        self.interpreter = open_interpreter(path, threads, package, delegate)
        self.ran_as = ran_as(self.interpreter)
        self.inp = self.interpreter.get_input_details()[0]
        self.outs = self.interpreter.get_output_details()
        self.input_name = self.inp["name"]
        self.output_names = tuple(d["name"] for d in self.outs)
        self.meta = read_metadata(path)

    def io(self) -> dict:
        """Input and output tensors as the manifest records them (shape, dtype, quantisation)."""

        def row(d):
            scale, zp = d["quantization"]
            q = {"scale": float(scale), "zero_point": int(zp)} if d["dtype"] != np.float32 else {}
            return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name, **q}

        return {
            "input": {
                **row(self.inp),
                "layout": "NCHW"
                if self.inp["shape"][-1] != 3
                else ("NSHWC" if len(self.inp["shape"]) == 5 else "NHWC"),
            },
            "outputs": [row(d) for d in self.outs],
        }

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        it, inp = self.interpreter, self.inp
        res: dict[str, list] = {d["name"]: [] for d in self.outs}
        for xi in np.moveaxis(np.asarray(x, np.float32), -3, -1):  # batch 1 at a time: the graph is batch 1
            if inp["dtype"] != np.float32:
                scale, zp = inp["quantization"]
                info = np.iinfo(inp["dtype"])
                xi = np.clip(np.round(xi / scale) + zp, info.min, info.max)
            it.set_tensor(inp["index"], xi[None].astype(inp["dtype"]))
            it.invoke()
            for d in self.outs:
                res[d["name"]].append(it.get_tensor(d["index"])[0])
        return {k: np.stack(v) for k, v in res.items()}

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return decode_outputs(dequantize(self.raw(x), self.outs), self.meta)


def dequantize(raw: dict[str, np.ndarray], details: list[dict]) -> dict[str, np.ndarray]:
    """Integer outputs -> float with each tensor's (scale, zero point); float outputs pass through."""
    out = {}
    for d in details:
        v = raw[d["name"]]
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            v = (v.astype(np.float32) - zp) * scale
        out[d["name"]] = v
    return out


class SubprocessRunner(TFLiteRunner):
    """tflite-runtime 2.14 (needs numpy<2) in its own prepared venv: the graph runs there, this process decodes."""

    def __init__(self, path: Path, threads: int | None, python: Path):
        self.path, self.threads, self.python = Path(path).resolve(), threads or 1, python
        self.ran_as = "tflite-runtime/unknown"  # the worker says which delegate ran
        it = open_interpreter(path, 1, "ai-edge-litert", "builtin")  # details and metadata only; nothing runs here
        self.inp, self.outs = it.get_input_details()[0], it.get_output_details()
        self.input_name, self.output_names = self.inp["name"], tuple(d["name"] for d in self.outs)
        self.meta = read_metadata(path)

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import subprocess
        import tempfile

        from c3ae_edge.errors import VerificationError
        from c3ae_edge.export.runtime_env import package_only

        with tempfile.TemporaryDirectory() as td:
            np.save(Path(td) / "x.npy", np.asarray(x, np.float32), allow_pickle=False)
            # only the c3ae_edge package on the path: never the folder above it (an installed package's
            # site-packages would shadow the venv's numpy<2 with ours)
            env = {"PYTHONPATH": str(package_only(Path(td) / "path")), "PATH": "/usr/bin:/bin"}
            r = subprocess.run(
                [str(self.python), "-s", "-m", __name__, str(self.path), td, str(self.threads)],
                capture_output=True,
                text=True,
                env=env,
                cwd=td,
            )
            if r.returncode:
                last = (r.stderr.strip().splitlines() or ["no output"])[-1]
                raise VerificationError(f"{self.path.name}: tflite-runtime worker failed ({last})")
            self.ran_as = (Path(td) / "ran_as.txt").read_text().strip()
            with np.load(Path(td) / "raw.npz", allow_pickle=False) as z:
                return {d["name"]: z[d["name"]] for d in self.outs}


def _worker(argv: list[str]) -> None:
    """In the tflite-runtime venv: run x.npy through the model with tflite_runtime, write raw.npz."""
    model, folder, threads = argv
    r = TFLiteRunner(Path(model), int(threads), package="tflite-runtime", delegate="default")
    np.savez(Path(folder) / "raw.npz", **r.raw(np.load(Path(folder) / "x.npy", allow_pickle=False)))
    (Path(folder) / "ran_as.txt").write_text(r.ran_as)


def bench_forward(path: Path, threads: int, precision: str = "fp32", batch: int = 1):
    """The bench's timed call: NCHW float crops -> NHWC (+ int8 quantise) -> invoke, inside the call; a batch other
    than the graph's resizes the input once (and fails cleanly where the graph bakes in batch 1)."""
    it = open_interpreter(path, threads)
    inp, outs = it.get_input_details()[0], it.get_output_details()
    scale, zp = inp["quantization"]
    q = inp["dtype"] != np.float32
    lo, hi = (np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max) if q else (0, 0)
    shape = [int(v) for v in inp["shape"]]

    def forward(x):
        xi = np.moveaxis(x, -3, -1)
        if xi.shape[0] != shape[0]:
            shape[0] = xi.shape[0]
            it.resize_tensor_input(inp["index"], list(xi.shape))
            it.allocate_tensors()
        if q:
            xi = np.clip(np.rint(xi / scale) + zp, lo, hi)
        it.set_tensor(inp["index"], xi.astype(inp["dtype"]))
        it.invoke()
        return [it.get_tensor(o["index"]) for o in outs]

    return forward


def graph_report(path: Path, threads: int = 1) -> dict:
    """Op counts, MACC from tensor shapes, and which ops the default XNNPACK delegate took (the rest run as CPU
    kernels)."""
    it = open_interpreter(path, threads)
    nodes = it._get_ops_details()
    shapes = {int(t["index"]): [int(v) for v in t["shape"]] for t in it.get_tensor_details()}
    orig = [n for n in nodes if n["op_name"] != "DELEGATE"]
    dele = [n for n in nodes if n["op_name"] == "DELEGATE"]
    macc = 0
    for n in orig:
        ins, outs = [int(v) for v in n["inputs"]], [int(v) for v in n["outputs"]]
        o = shapes.get(outs[0]) if outs else None
        w = shapes.get(ins[1]) if len(ins) > 1 else None
        if not o or not w:
            continue
        if n["op_name"] == "CONV_2D":
            macc += math.prod(o) * math.prod(w[1:])
        elif n["op_name"] == "DEPTHWISE_CONV_2D":
            macc += math.prod(o) * w[1] * w[2]
        elif n["op_name"] == "FULLY_CONNECTED":
            macc += math.prod(o) * w[-1]
    taken = _delegated(orig, dele)
    ops = Counter(n["op_name"] for n in orig)
    by_delegate = Counter(n["op_name"] for n in orig if int(n["index"]) in taken)
    on_cpu = Counter(n["op_name"] for n in orig if int(n["index"]) not in taken)
    return {
        "format": "tflite",
        "ops": dict(ops.most_common()),
        "nodes": len(orig),
        "macc": macc or None,
        "runtime": {
            "delegate": "XNNPACK (default delegate)" if dele else None,
            "partitions": len(dele),
            "delegate_ops": dict(by_delegate.most_common()),
            "cpu_ops": dict(on_cpu.most_common()),
        },
    }


def _delegated(orig: list[dict], dele: list[dict]) -> set[int]:
    """Original nodes inside a delegate partition: on a path from the partition's inputs to its outputs."""
    taken: set[int] = set()
    for d in dele:
        d_in, d_out = set(d["inputs"]), set(d["outputs"])
        fwd = set(d_in)
        for n in orig:  # nodes are in topological order
            if fwd & set(n["inputs"]):
                fwd |= set(n["outputs"])
        back = set(d_out)
        for n in reversed(orig):
            if back & set(n["outputs"]):
                back |= set(n["inputs"])
        taken |= {
            int(n["index"])
            for n in orig
            if set(n["inputs"]) & fwd and set(n["outputs"]) & back and not set(n["outputs"]) & d_in
        }
    return taken


def _litert_missing() -> str | None:
    return module_missing("ai_edge_litert.interpreter", "ai-edge-litert", "tflite")


def _in_process_tflite_runtime() -> bool:
    """tflite_runtime importable here (a board, or a venv with numpy<2), not only through the prepared venv."""
    import importlib.util

    try:
        return importlib.util.find_spec("tflite_runtime") is not None
    except (ImportError, ValueError):
        return False


def _tflite_runtime(path: Path, threads: int | None):
    from c3ae_edge.export import runtime_env

    if _in_process_tflite_runtime():
        return TFLiteRunner(path, threads, "tflite-runtime", "default")
    return SubprocessRunner(path, threads, runtime_env.python("tflite-runtime"))


def _tflite_runtime_missing() -> str | None:
    from c3ae_edge.export import runtime_env

    if _in_process_tflite_runtime():
        return None
    return _litert_missing() or runtime_env.missing("tflite-runtime")


RUNTIMES = (
    Runtime(
        "ai-edge-litert/xnnpack",
        "ai-edge-litert",
        "xnnpack",
        lambda p, t: TFLiteRunner(p, t, "ai-edge-litert", "xnnpack"),
        _litert_missing,
        "ai-edge-litert's default: the XNNPACK delegate takes the whole graph",
    ),
    Runtime(
        "ai-edge-litert/builtin",
        "ai-edge-litert",
        "builtin",
        lambda p, t: TFLiteRunner(p, t, "ai-edge-litert", "builtin"),
        _litert_missing,
        "ai-edge-litert without its default delegate (BUILTIN_WITHOUT_DEFAULT_DELEGATES): the built-in kernels",
    ),
    Runtime(
        "tflite-runtime/builtin",
        "tflite-runtime",
        "builtin",
        _tflite_runtime,
        _tflite_runtime_missing,
        "tflite-runtime 2.14 (pip on Pi OS Bookworm): its XNNPACK does not take int8 graphs, built-in kernels run",
        lambda: "2.14.0",
    ),  # pinned in runtime_env.VENVS
)
BENCH = BenchSupport(
    options={
        "delegate": "XNNPACK (the interpreter's default)",
        "num_threads": "= threads",
        "input": "NCHW -> NHWC moveaxis (+ int8 quantise) in the timed call",
    },
    forward=bench_forward,
    graph=graph_report,
    conversion_ops={"transpose": ("TRANSPOSE",), "quantize": ("QUANTIZE",), "dequantize": ("DEQUANTIZE",)},
)
BACKEND = TFLiteBackend()


if __name__ == "__main__":
    import sys

    _worker(sys.argv[1:])
