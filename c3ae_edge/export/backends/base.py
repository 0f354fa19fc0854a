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
    spec: BackendSpec
    runtimes: tuple[Runtime, ...]  # the first is the default (what ``load`` opens)

    def export(self, model, example: np.ndarray, out_dir: Path, precision: str, calibration: np.ndarray | None, options: dict) -> Path:
        """Write the artifact for ``precision`` into ``out_dir`` and return its path."""
        ...

    def load(self, path: Path, threads: int | None = None, options: dict | None = None) -> Runner:
        """Load an artifact written by ``export`` (or any compatible file) for inference."""
        ...
