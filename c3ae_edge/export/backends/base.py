"""The contract every export backend keeps. One module per backend registers one ``Backend`` in the table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class BackendSpec:
    """One row of the format table that drives the CLI help, the exporter and the bench."""

    name: str  # "onnx" | "tflite" | "openvino"
    suffix: str  # file suffix of the artifact, ".onnx"
    precisions: tuple[str, ...]  # e.g. ("fp32", "int8")
    runtimes: tuple[str, ...]  # e.g. ("onnxruntime",)
    extra: str  # pip extra that installs it: pip install 'c3ae-edge[<extra>]'
    description: str = ""
    requires: tuple[str, ...] = ()  # modules the export imports (checked first: a missing extra is one line)
    options: dict = field(default_factory=dict)
    toolchain: tuple[str, ...] = ()  # distributions that write the artifact: the manifest's "toolchain" records them


@dataclass(frozen=True)
class Runtime:
    """One runtime (and delegate) a board may run a backend's artifacts under; targets name them in ``runtimes``."""

    id: str  # "<package>/<delegate>", e.g. "ai-edge-litert/xnnpack"
    package: str  # the distribution whose version the manifest records
    delegate: str  # what really executes the kernels: "xnnpack", "builtin" (reference/optimised built-ins), "cpu"
    open: Callable  # (path, threads) -> Runner
    missing: Callable[[], str | None] = lambda: None  # a one-line reason when it is not usable here
    note: str = ""
    version: Callable[[], str | None] | None = None  # default: the installed distribution's version


Forward = Callable[[np.ndarray], object]  # the bench's timed call: float32 crops (the model's layout) -> outputs


@dataclass(frozen=True)
class BenchSupport:
    """What ``c3ae-edge bench`` needs to time a backend's artifacts on this host (``Backend.bench``)."""

    options: dict  # runtime options, set explicitly and reported with every row
    forward: Callable[..., Forward]  # (path, threads, precision, batch) -> the timed call (layout moves inside it)
    graph: Callable[[Path, int], dict]  # (path, threads) -> {"format", "ops", "nodes", "macc", "runtime"}
    conversion_ops: dict[str, tuple[str, ...]]  # "transpose" / "quantize" / "dequantize" -> this format's op names
    run_as: dict[str, str] = field(default_factory=dict)  # bench-only precision -> the artifact precision it runs
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # precision -> rewrite variants timed by default
    int8_from_fp32: Callable | None = None  # (fp32 path, dst, calibration, options) -> dst: int8 from the fp32 file


class Runner(Protocol):
    """A loaded artifact: run a batch of preprocessed crops (float32, the model's input layout) -> outputs by name."""

    input_name: str
    output_names: tuple[str, ...]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Returns at least {"age": (B,) float32}; cascade models also {"bins": (B, 12) float32}."""
        ...

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The artifact's output tensors as the runtime returns them (int8 stays int8): the golden outputs."""
        ...

    def io(self) -> dict:
        """Input and output tensors as the manifest records them."""
        ...


class Backend(Protocol):
    """One module per backend defines ``BACKEND`` and registers it in ``c3ae_edge.export.registry`` (one line).
    Optional: ``bundle_extras(folder, manifest, log) -> dict`` adds files to a bundle and sections to its manifest."""

    spec: BackendSpec
    runtimes: tuple[Runtime, ...]  # the first is the default (what ``load`` opens); each opens ONE runner kind
    bench: BenchSupport | None  # None: the host bench does not time this backend (it says why in its module)

    def export(
        self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict
    ) -> Path:
        """Write the artifact for ``precision`` into ``out_dir`` and return its path."""
        ...

    def load(self, path: Path, threads: int | None = None, options: dict | None = None) -> Runner:
        """Load an artifact written by ``export`` (or any compatible file) for inference."""
        ...
