"""The backend table: one module per backend, registered here by name (lazy: no heavy import until used)."""

from __future__ import annotations

import importlib

from c3ae_edge.errors import UsageError
from c3ae_edge.export.backends.base import Backend, BackendSpec

# name -> module defining ``BACKEND`` (adding a backend = one module + one line here + its pip extra in pyproject).
# The order is the manifest's "toolchain" order (see toolchain_packages): appending keeps old manifests' bytes.
_MODULES = {
    "onnx": "c3ae_edge.export.backends.onnx_backend",
    "openvino": "c3ae_edge.export.backends.openvino_backend",
    "tflite": "c3ae_edge.export.backends.tflite_backend",
    "tflm": "c3ae_edge.export.backends.tflm_backend",
}


def backend_names() -> list[str]:
    return list(_MODULES)


def get_backend(name: str) -> Backend:
    """The backend object (``.spec``, ``.export``, ``.load``) for ``name``."""
    if name not in _MODULES:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name]).BACKEND


def list_backends() -> list[BackendSpec]:
    """Every registered backend's spec row (importing a backend module imports no heavy library)."""
    return [get_backend(n).spec for n in _MODULES]


def toolchain_packages() -> tuple[str, ...]:
    """The converters whose versions a bundle's manifest records: each backend's ``spec.toolchain``, in table order,
    each once."""
    return tuple(dict.fromkeys(p for spec in list_backends() for p in spec.toolchain))


def bench_backends() -> list[str]:
    """The backends the host bench times (``bench`` is not None), in table order."""
    return [n for n in _MODULES if get_backend(n).bench is not None]
