"""A .tflite flatbuffer as typed records: tensors (shape, int8 quantisation, constant data) and operators."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from c3ae_edge.errors import UsageError

_DTYPES = {"INT8": np.int8, "INT32": np.int32, "UINT8": np.uint8, "INT16": np.int16, "FLOAT32": np.float32}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str  # TFLite TensorType name: INT8, INT32, ...
    shape: tuple[int, ...]
    scales: tuple[float, ...] = ()  # float32 values, as stored
    zero_points: tuple[int, ...] = ()
    data: np.ndarray | None = field(default=None, compare=False, repr=False)  # constant tensors only

    @property
    def scale(self) -> float:
        return self.scales[0]

    @property
    def zp(self) -> int:
        return self.zero_points[0]


@dataclass(frozen=True)
class Op:
    index: int
    name: str  # builtin operator name: CONV_2D, MEAN, ...
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


@dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def consumers(self, t: int) -> list[Op]:
        return [op for op in self.ops if t in op.inputs]

    def producer(self, t: int) -> Op | None:
        return next((op for op in self.ops if t in op.outputs), None)


def _enum_names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _tensor(i: int, t, buffers, types: dict[int, str]) -> Tensor:
    dtype = types[t.type]
    q = t.quantization
    scales = tuple(float(s) for s in q.scale) if q is not None and q.scale is not None else ()
    zps = tuple(int(z) for z in q.zeroPoint) if q is not None and q.zeroPoint is not None else ()
    raw = buffers[t.buffer].data
    data = None
    if raw is not None and len(raw) and dtype in _DTYPES:
        data = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), _DTYPES[dtype]).reshape(tuple(t.shape))
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    return Tensor(i, name, dtype, tuple(int(v) for v in t.shape), scales, zps, data)


def read_graph(flat: bytes, where: str = "model") -> Graph:
    """Parse the first subgraph of a .tflite flatbuffer (LiteRT's schema bindings, part of the 'mcu' extra)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    try:
        m = fu.read_model_from_bytearray(bytearray(flat))
    except Exception as e:  # a corrupt flatbuffer raises whatever the generated reader hits first
        raise UsageError(f"{where}: not a readable .tflite flatbuffer ({type(e).__name__})") from None
    ops_names, types = _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType)
    sg = m.subgraphs[0]
    tensors = tuple(_tensor(i, t, m.buffers, types) for i, t in enumerate(sg.tensors))
    ops = []
    for k, op in enumerate(sg.operators):
        code = m.operatorCodes[op.opcodeIndex]
        name = ops_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"op{code.builtinCode}")
        opts = {kk: v for kk, v in vars(op.builtinOptions).items()} if op.builtinOptions is not None else {}
        ops.append(Op(k, name, tuple(int(i) for i in op.inputs), tuple(int(i) for i in op.outputs), opts))
    return Graph(tensors, tuple(ops), tuple(int(i) for i in sg.inputs), tuple(int(i) for i in sg.outputs))
