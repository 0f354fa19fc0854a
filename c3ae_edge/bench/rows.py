"""Typed bench rows: one timed forward (``BenchRow``) or one photo-to-age pipeline row (``E2ERow``) of a bench JSON
document (schema ``c3ae-edge-bench/1``, written by the harness, the CUDA bench and the standalone on-board runner).

``from_json`` keeps the key order and the keys this version does not know, so ``from_json(d).to_json() == d`` with the
same key order: a merged or re-written document has the same bytes as before. Nested blocks (latency, memory, graph,
...) stay JSON objects: their keys come from numpy-only code on the boards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

MAX_TEXT = 1000  # characters in a name, label or note of a row


def _time_ok(v) -> bool:
    """A latency figure: a non-negative finite number, or a list of them (a confidence interval, samples)."""
    if isinstance(v, list):
        return len(v) <= 1 << 20 and all(_time_ok(x) for x in v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return isinstance(v, str) and len(v) <= MAX_TEXT  # a unit or a note
    return math.isfinite(v) and v >= 0


@dataclass
class BenchRow:
    """One (model, backend, precision, threads, batch) forward, or why it did not run (``error``)."""

    model: str
    backend: str
    precision: str
    threads: int | None = None
    batch: int | None = None
    device: str | None = None
    variant: str | None = None  # a rewrite of the graph (e.g. dwpool), timed beside the plain artifact
    machine: str | None = None  # set by merge: which machine (and runner) the row came from
    weights: str | None = None
    params: int | None = None
    macc: dict | None = None  # {"model": MACC counted on the module, "graph": MACC counted in the artifact}
    paper: dict | None = None
    runtime_options: dict | None = None
    export: dict | None = None
    load: dict | None = None
    first_inference: dict | None = None
    memory: dict | None = None
    artifact: dict | None = None  # {"file", "bytes"}
    parity: dict | None = None
    graph: dict | None = None
    latency: dict | None = None  # stats.latency_stats(): seconds, p50 with its bootstrap CI, ...
    throughput: dict | None = None
    efficiency: dict | None = None
    error: str | None = None
    runtime: str | None = None  # on-board runner: the runtime, version and delegate that ran
    runtime_version: str | None = None
    runtime_id: str | None = None
    delegate: dict | None = None
    source: str | None = None
    peak: dict | None = None
    gpu: dict | None = None
    timing: dict | None = None  # runs asked / timed, the row's time budget and what stopped it (c3ae_edge.bench.budget)
    form: dict | None = None  # PyTorch-forms rows: the variant spec and what the form folded, fused or compiled
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys this version does not know, kept
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # key order of the JSON it came from

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("extra", "keys"))

    @classmethod
    def from_json(cls, d: dict) -> BenchRow:
        """A row of a bench JSON document (a photo-to-age row comes back as an ``E2ERow``); ValueError if not a row."""
        if not isinstance(d, dict):
            raise ValueError(f"a bench row is a JSON object, not {type(d).__name__}")
        if not all(isinstance(d.get(k), str) for k in ("model", "backend", "precision")):
            raise ValueError("a bench row needs model, backend and precision (strings)")
        long = next((k for k, v in d.items() if isinstance(v, str) and len(v) > MAX_TEXT), None)
        if long:
            raise ValueError(f"a bench row's {long!r} is {len(d[long]):,} characters (at most {MAX_TEXT})")
        lat = d.get("latency", {"p50": 0})
        if not (isinstance(lat, dict) and isinstance(lat.get("p50"), (int, float))):
            raise ValueError("a bench row's latency needs a numeric p50")
        bad = next((k for k, v in lat.items() if not _time_ok(v)), None)
        if bad is not None:
            raise ValueError(f"a bench row's latency {bad} is {lat[bad]!r}, not a non-negative number of seconds")
        if "latency" in d and not d.get("error") and "artifact" not in d and "form" not in d:
            raise ValueError("a timed bench row needs its artifact (file, bytes; a PyTorch-forms row its form)")
        kind = E2ERow if cls is BenchRow and d.get("pipeline") else cls
        known = set(kind.names())
        return kind(
            **{k: v for k, v in d.items() if k in known},
            extra={k: v for k, v in d.items() if k not in known},
            keys=tuple(d),
        )

    def to_json(self) -> dict:
        """The row as the schema writes it: the keys it was read with, in that order, then any set since."""
        names = self.names()
        order = list(self.keys) + [k for k in names if k not in self.keys and getattr(self, k) is not None]
        order += [k for k in self.extra if k not in order]
        return {k: getattr(self, k) if k in names else self.extra[k] for k in order}

    # ------------------------------------------------------------ derived

    @property
    def timed(self) -> bool:
        """A timed forward row (photo-to-age rows have their own section of the report)."""
        return self.latency is not None and not self.error

    @property
    def p50(self) -> float:
        return self.latency["p50"]

    @property
    def backend_label(self) -> str:
        """The backend, and for on-board rows the runtime, version and delegate that ran (two on one board differ)."""
        if not self.runtime_id:
            return str(self.backend)
        return f"{self.backend} [{self.runtime_id} {self.runtime_version or ''}]".replace(" ]", "]")

    @property
    def parity_ok(self) -> bool:
        """False when the row's ages fell outside its tolerance (such a row is marked, never a best figure)."""
        return (self.parity or {}).get("within_tolerance") is not False

    @property
    def label(self) -> str:
        """backend precision (variant): what ran, in one cell."""
        return f"{self.backend_label} {self.precision}" + (f" ({self.variant})" if self.variant else "")


@dataclass
class E2ERow(BenchRow):
    """Photo to age: decode, detect, crop and the age network per image, timed per stage over a set of images."""

    pipeline: str | None = None  # "photo-to-age"
    input: str | None = None  # the image set: "FG-NET photos", "640x480 frames", ...
    frame: list[int] | None = None
    detector: str | None = None
    images: int | None = None
    faces_found: int | None = None
    annotated_face_found: int | None = None
    stages: dict | None = None  # {"decode"|"detect"|"crop"|"age": latency block}
    thread_cpu_p50_s: dict | None = None

    @property
    def timed(self) -> bool:
        return False  # not a forward row: the report's photo-to-age section shows it


def rows_of(doc: dict) -> list[BenchRow]:
    """The typed rows of a bench document (ValueError names the first row that is not one)."""
    out = []
    for i, r in enumerate(doc["results"]):
        try:
            out.append(BenchRow.from_json(r))
        except ValueError as e:
            raise ValueError(f"results[{i}]: {e}") from None
    return out
