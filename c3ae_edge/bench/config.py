"""What a bench run is asked to do (``BenchConfig``), checked before anything runs, and the backends it can time."""

from __future__ import annotations

from dataclasses import dataclass, field

from c3ae_edge.errors import UsageError

# Per-row time budgets: a row stops at --runs timed forwards, or once it has timed for --budget seconds with at least
# --min-runs forwards (large batches: the count is recorded with the row). A GPU run also has a whole-run time limit.
CPU_BUDGET_S, CPU_MIN_RUNS = 20.0, 200
CUDA_BUDGET_S, CUDA_MIN_RUNS, CUDA_TIME_LIMIT_S = 0.5, 20, 150.0


@dataclass
class BenchConfig:
    models: list[str]
    backends: list[str]
    precisions: list[str]
    runs: int = 2000
    warmup: int = 100
    threads: list[int] = field(default_factory=lambda: [1])
    batches: list[int] = field(default_factory=lambda: [1])
    device: str = "cpu"
    data: str | None = None
    seed: int = 0
    command: str = ""
    e2e: int = 60  # FG-NET photos for the photo-to-age rows (0: none); models with shipped weights only
    detector: str = "auto"
    budget_s: float | None = None  # per-row timing budget (None: the device's default; 0: none, --runs only)
    min_runs: int | None = None  # forwards a row times before its budget may stop it
    time_limit_s: float | None = None  # PyTorch-forms run: no row starts after this; rows shrink to fit it
    variants: list[str] | None = None  # PyTorch forms to time (c3ae_edge.bench.gpu_forms); --device cuda: default

    @property
    def forms_run(self) -> bool:
        """Time PyTorch forms on the device (``--device cuda``, or ``--variants`` on the CPU), not artifacts."""
        return self.device == "cuda" or bool(self.variants)

    def resolve(self) -> BenchConfig:
        """Fill the device's defaults (recorded in the document)."""
        cuda = self.device == "cuda"
        if self.budget_s is None:
            self.budget_s = CUDA_BUDGET_S if self.forms_run else CPU_BUDGET_S
        if self.min_runs is None:
            self.min_runs = CUDA_MIN_RUNS if self.forms_run else CPU_MIN_RUNS
        if self.time_limit_s is None and cuda:
            self.time_limit_s = CUDA_TIME_LIMIT_S
        if cuda and not self.variants:
            self.variants = ["default"]
        return self

    def check(self) -> None:
        from c3ae_edge.models import list_models

        _known("model", self.models, list_models())
        _known("backend", self.backends, all_backends())
        _known("precision", self.precisions, bench_precisions())
        if self.runs < 1 or self.warmup < 0:
            raise UsageError("--runs must be >= 1 and --warmup >= 0")
        if not self.threads or min(self.threads) < 1 or not self.batches or min(self.batches) < 1:
            raise UsageError("--threads and --batch take positive integers")
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device {self.device!r}: use cpu or cuda")
        if self.e2e < 0:
            raise UsageError("--e2e takes a number of photos >= 0")
        if (self.budget_s or 0) < 0 or (self.min_runs or 0) < 0 or (self.time_limit_s or 0) < 0:
            raise UsageError("--budget, --min-runs and --time-limit take numbers >= 0")
        if self.variants:
            from c3ae_edge.bench.gpu_forms import parse_variants

            parse_variants(self.variants, self.device)  # a bad name is a UsageError naming it


def _known(what: str, given: list[str], known) -> None:
    bad = [g for g in given if g not in set(known)]
    if bad:
        raise UsageError(f"unknown {what}(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")


def all_backends() -> list[str]:
    """torch (the reference) plus every registered backend the host bench times."""
    from c3ae_edge.export.registry import bench_backends

    return ["torch", *bench_backends()]


def bench_precisions() -> list[str]:
    """Every precision a benched backend exports or runs (its ``bench.run_as``: OpenVINO's bf16)."""
    from c3ae_edge.export.registry import get_backend

    bes = [get_backend(b) for b in all_backends()[1:]]
    return list(dict.fromkeys(p for be in bes for p in (*be.spec.precisions, *be.bench.run_as)))


def installed_backends() -> list[str]:
    """torch plus every artifact backend whose runtime and exporter import here."""
    import importlib.util

    from c3ae_edge.export.registry import get_backend

    return ["torch"] + [
        b for b in all_backends()[1:] if all(importlib.util.find_spec(m) for m in get_backend(b).spec.requires)
    ]
