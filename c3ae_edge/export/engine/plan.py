"""The static memory plan: which layer outputs are kept whole, which stream through row rings, and where every buffer
sits in the one caller-provided work buffer.

Layers run in segments. A segment ends at a kept layer (its whole map stays in the work buffer for the next segment);
the layers inside a segment keep only the rows their consumer's kernel needs (a ring of k rows). A squeeze-excite
block on a streamed layer needs the mean of that layer's whole map before any row can go on: its segment runs once up
to that layer to take the mean (the "first pass") and then again with the rescale applied (the recompute). A kept
layer's squeeze-excite block is applied in place once its map is complete. Every candidate set of kept layers is
costed (work bytes, multiply-accumulates including recompute, input rows produced) and the plan is picked by the
target's objective: the smallest work buffer whose recompute stays within a bound, or the fewest MACs within budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from c3ae_edge.errors import UsageError
from c3ae_edge.export.engine.network import Network

ALIGN = 4
QLUT_BYTES = 3 * 256  # the crop's uint8 -> int8 input table, one per colour channel
MAX_RECOMPUTE = 0.5  # "smallest" plans may add at most this fraction of the trunk's MACs in recompute


@dataclass(frozen=True)
class Pass:
    first: int  # first layer re-run (its counters reset)
    last: int  # layer whose rows are all pulled


@dataclass
class Plan:
    kept: tuple[int, ...]  # layer indices whose output map is kept whole
    rings: list[int]  # rows held per layer (a kept layer holds all of its rows)
    offsets: list[int]  # byte offset of each layer's rows in the work buffer
    passes: list[Pass]
    static: dict[str, int]  # offsets of the fixed regions: features, qlut, sums, scales
    work_bytes: int
    macs: int  # multiply-accumulates per crop, recompute included
    base_macs: int  # the graph's MACs (every row once)
    input_rows: int  # crop rows produced per crop (recompute included)
    crops: int
    candidates: list[dict] = field(default_factory=list)

    @property
    def recompute(self) -> float:
        return self.macs / self.base_macs - 1.0


def _up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def row_bytes(net: Network, i: int) -> int:
    _, w, c = net.layers[i].out_shape
    return w * c


def _segments(n: int, kept: tuple[int, ...]) -> list[tuple[int, int]]:
    out, first = [], 0
    for k in kept:
        out.append((first, k))
        first = k + 1
    return out


def _passes(net: Network, kept: tuple[int, ...]) -> list[Pass]:
    """Per segment: one pass to each streamed squeeze-excite layer (its mean), then one pass to the kept layer."""
    out = []
    for first, last in _segments(len(net.layers), kept):
        out += [Pass(first, i) for i in range(first, last) if net.layers[i].se is not None]
        out.append(Pass(first, last))
    return out


def _pass_cost(net: Network, p: Pass) -> tuple[int, int]:
    """(MACs, input rows) of pulling every row of layer p.last, producing only the rows each consumer needs."""
    rows = net.layers[p.last].out_shape[0]
    macs = in_rows = 0
    for i in range(p.last, p.first - 1, -1):
        L = net.layers[i]
        macs += L.macs // L.out_shape[0] * rows
        if L.kind == "input":
            in_rows += rows
        rows = (rows - 1) * L.stride + L.k
    return macs, in_rows


def _static(net: Network, crops: int) -> tuple[dict[str, int], int]:
    feats = _up(crops * _feat(net))
    nse = sum(L.se is not None for L in net.layers)
    cmax = max(L.out_shape[2] for L in net.layers)
    regions = {"features": feats, "qlut": QLUT_BYTES, "sums": 4 * cmax, "scales": _up(2 * cmax * max(nse, 1))}
    off, out = 0, {}
    for k, v in regions.items():
        out[k] = off
        off += _up(v)
    return out, off


def _feat(net: Network) -> int:
    h, w, c = net.layers[-1].out_shape
    return h * w * c


def _allocate(sizes: list[int], lives: list[tuple[int, int]]) -> tuple[list[int], int]:
    """First-fit offsets for buffers with lifetimes (segment ranges), largest first; -> (offsets, peak bytes)."""
    offs = [-1] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        if not sizes[i]:
            offs[i] = 0
            continue
        taken = sorted(
            (offs[j], offs[j] + sizes[j])
            for j in range(len(sizes))
            if offs[j] >= 0 and sizes[j] and lives[j][0] <= lives[i][1] and lives[i][0] <= lives[j][1]
        )
        at = 0
        for lo, hi in taken:
            if at + sizes[i] <= lo:
                break
            at = max(at, _up(hi))
        offs[i] = at
    return offs, max((o + s for o, s in zip(offs, sizes)), default=0)


def make_plan(net: Network, kept: tuple[int, ...], crops: int) -> Plan:
    """The layout for one choice of kept layers (the last layer is always kept)."""
    n = len(net.layers)
    kept = tuple(sorted(set(kept) | {n - 1}))
    seg = {i: j for j, (a, b) in enumerate(_segments(n, kept)) for i in range(a, b + 1)}
    rings = [net.layers[i].out_shape[0] if i in kept else net.layers[i + 1].k for i in range(n)]
    sizes = [_up(rings[i] * row_bytes(net, i)) for i in range(n)]
    lives = [(seg[i], seg[i] + (1 if i in kept and i < n - 1 else 0)) for i in range(n)]
    offs, peak = _allocate(sizes, lives)
    static, base = _static(net, crops)
    passes = _passes(net, kept)
    costs = [_pass_cost(net, p) for p in passes]
    return Plan(
        kept=kept,
        rings=rings,
        offsets=[base + o for o in offs],
        passes=passes,
        static=static,
        work_bytes=base + peak,
        macs=sum(c[0] for c in costs),
        base_macs=sum(L.macs for L in net.layers),
        input_rows=sum(c[1] for c in costs),
        crops=crops,
    )


def choose(net: Network, crops: int, objective: str = "smallest", budget: int | None = None) -> Plan:
    """Cost every set of kept layers; "smallest": least work bytes with recompute <= MAX_RECOMPUTE of the MACs;
    "fastest": fewest MACs within ``budget`` (work bytes). Ties go to fewer MACs, then fewer bytes."""
    if objective not in ("smallest", "fastest"):
        raise UsageError(f"engine plan objective {objective!r}: use 'smallest' or 'fastest'")
    inner = range(1, len(net.layers) - 1)
    plans = [make_plan(net, kept, crops) for r in range(len(inner) + 1) for kept in combinations(inner, r)]
    if objective == "smallest":
        ok = [p for p in plans if p.recompute <= MAX_RECOMPUTE]
        best = min(ok, key=lambda p: (p.work_bytes, p.macs, p.kept))
    else:
        ok = [p for p in plans if budget is None or p.work_bytes <= budget] or plans
        best = min(ok, key=lambda p: (p.macs, p.work_bytes, p.kept))
    front = {}
    for p in sorted(plans, key=lambda p: (p.macs, p.work_bytes)):  # the Pareto front: what each extra byte buys
        if not front or p.work_bytes < min(front):
            front[p.work_bytes] = p
    best.candidates = [
        {"kept_layers": list(p.kept), "work_bytes": p.work_bytes, "macs": p.macs, "recompute": round(p.recompute, 4)}
        for p in sorted(front.values(), key=lambda p: p.work_bytes)
    ]
    return best
