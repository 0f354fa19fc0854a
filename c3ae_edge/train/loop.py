"""Training: seeded, resumable, CPU or CUDA, single process or DistributedDataParallel under torchrun."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from c3ae_edge.atomic import write_atomic
from c3ae_edge.data import load_dataset, load_split, save_split, stratified_split
from c3ae_edge.data.crops import spec_for
from c3ae_edge.data.facedata import Augment, FaceData
from c3ae_edge.errors import DataError, UsageError
from c3ae_edge.models import create_model
from c3ae_edge.models.twopoint import cascade_loss
from c3ae_edge.weights import atomic_save, save_weights

RUN_FILES = ("best.pt", "final.pt", "last.pt", "history.json", "result.json", "config.json")


@dataclass
class TrainConfig:
    model: str = "c3ae_full"
    data: str = "utkface:../shared/data/utkface"
    out: str = "runs/c3ae_full"
    epochs: int = 45
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    alpha: float = 10.0
    l1_w1: float = 5e-5
    schedule: str = "cosine"  # cosine (our default) | plateau (the paper's)
    patience: int = 10
    min_delta: float = 1e-4
    warmup_epochs: float = 1.0
    ema: float = 0.999
    jitter: float = 0.05
    erase_p: float = 0.5
    seed: int = 0
    val_frac: float = 0.1
    test_frac: float = 0.1
    split: str | None = None
    init: str | None = None  # warm start: weights file whose state_dict seeds the model (a restart cycle)
    limit: int | None = None
    max_steps: int | None = None
    compile: bool = True
    threads: int | None = None
    device: str = "auto"
    extra: dict = field(default_factory=dict)


RECIPES = {
    # Sec. 4.2, final models: Adam, batch 50, lr 0.005, dropout 0.3, wd 1e-4, plateau (20, 5e-4), random erasing, 600 epochs
    "paper": dict(epochs=600, batch_size=50, lr=0.005, dropout=0.3, weight_decay=1e-4, schedule="plateau", patience=20, min_delta=5e-4, ema=0.0, jitter=0.0),
    "paper-ablation": dict(epochs=160, batch_size=50, lr=0.002, dropout=0.2, weight_decay=1e-4, schedule="plateau", patience=10, min_delta=1e-4, ema=0.0, jitter=0.0),
    "fast": {},
}


class _TrainView(nn.Module):
    """(age, bin probabilities or None): what the loss needs, compiled as one graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        if getattr(self.model, "cascade", False):
            return self.model.forward_dist(x)
        return self.model(x), None


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _train_epoch(net, model, opt, data: FaceData, perm, batch_size: int, steps: int, aug, rng, dev, lr_at, step: int,
                 alpha: float, l1_w1: float, ema=None, max_steps: int | None = None) -> tuple[dict, int, int]:
    """One pass over ``perm``: returns summed loss/MAE, the number of batches and the new global step."""
    w1 = getattr(getattr(model, "head", None), "w1", None)
    batches = _prefetch(lambda b: data.batch(perm[b * batch_size:(b + 1) * batch_size], aug, rng), steps)
    sums, n = {"loss": 0.0, "mae": 0.0}, 0
    for x, y in batches:
        x, y = x.to(dev, non_blocking=True), y.to(dev)
        if lr_at is not None:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
        age, probs = net(x)
        if probs is not None:
            loss, parts = cascade_loss(age, probs, y, w1.weight if w1 is not None else None, alpha, l1_w1)
        else:
            loss = (age - y).abs().mean()
            parts = {"mae": float(loss.detach())}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        sums["loss"] += float(loss.detach())
        sums["mae"] += parts["mae"]
        n += 1
        if max_steps and step >= max_steps:
            break
    return sums, n, step


def finetune(model: nn.Module, data: FaceData, idx, epochs: int = 20, lr: float = 1e-3, batch_size: int = 32,
             seed: int = 0, alpha: float = 10.0, dev: torch.device | None = None) -> nn.Module:
    """Short cosine-schedule training of ``model`` on ``data[idx]`` (used by the FG-NET protocols)."""
    dev = dev or next(model.parameters()).device
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    idx = np.asarray(idx)
    steps = max(1, len(idx) // batch_size)
    total = epochs * steps
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    net = _TrainView(model)
    step = 0
    for _ in range(epochs):
        model.train()
        _, _, step = _train_epoch(net, model, opt, data, rng.permutation(idx), batch_size, steps, Augment(), rng, dev,
                                  lambda k: lr * 0.5 * (1 + math.cos(math.pi * k / total)), step, alpha, 0.0)
    return model.eval()


def _prefetch(make, n: int, depth: int = 3):
    """Yield make(0..n-1) built one step ahead in a thread, so crops overlap the forward/backward pass."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def work():
        for b in range(n):
            if stop.is_set():
                return
            q.put(make(b))
        q.put(None)

    threading.Thread(target=work, daemon=True).start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        stop.set()
        while not q.empty():
            q.get_nowait()


def evaluate_mae(model: nn.Module, data: FaceData, idx: list[int], batch: int = 256) -> tuple[float, np.ndarray]:
    """MAE of ``model`` on ``data[idx]`` with the deterministic crops; also the predictions."""
    model.eval()
    dev = next(model.parameters()).device
    preds = []
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            x, _ = data.batch(idx[s:s + batch])
            preds.append(model(x.to(dev)).float().cpu().numpy())
    p = np.concatenate(preds) if preds else np.zeros(0)
    return float(np.abs(p - data.ages[np.asarray(idx, dtype=int)]).mean()) if len(idx) else float("nan"), p


def refit_age_layer(model: nn.Module, data: FaceData, idx, steps: int = 3000, lr: float = 0.05) -> dict:
    """Re-fit the cascade's last layer (W2: 12 bin weights + bias) by L1 on the clean crops of ``data[idx]``, the
    rest of the model frozen. Training fits W2 on augmented crops (erasing, colour jitter); inference sees clean
    ones. Full-batch Adam from the current W2, so the result is deterministic. -> train L1 before and after."""
    model.eval()
    dev = next(model.parameters()).device
    idx = list(idx)
    with torch.no_grad():
        probs = torch.cat([model.forward_dist(data.batch(idx[s:s + 256])[0].to(dev))[1] for s in range(0, len(idx), 256)])
    y = torch.as_tensor(data.ages[np.asarray(idx, dtype=int)], dtype=probs.dtype, device=dev)
    w2 = model.head.w2
    w, b = w2.weight.detach().clone().requires_grad_(True), w2.bias.detach().clone().requires_grad_(True)

    def l1():
        return ((probs @ w.T).squeeze(-1) + b - y).abs().mean()

    with torch.no_grad():
        before = float(l1())
    opt = torch.optim.Adam([w, b], lr=lr)
    for k in range(steps):
        opt.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * k / steps))
        loss = l1()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w2.weight.copy_(w)
        w2.bias.copy_(b)
        return {"faces": len(idx), "train_l1_before": before, "train_l1_after": float(l1())}


def check_out(out: Path, resume: bool, force: bool, split: str | None = None) -> None:
    """A finished run is never silently replaced: a non-empty OUT needs --resume or --force; --resume needs last.pt."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --out is a file, not a folder")
    if resume:
        if not (out / "last.pt").is_file():
            raise UsageError(f"{out}/last.pt: no checkpoint to resume from (drop --resume to start a new run)")
        return
    mine = {Path(split).resolve()} if split else set()
    found = sorted(p.name for p in out.iterdir() if p.resolve() not in mine) if out.is_dir() else []
    if found and not force:
        raise UsageError(f"{out}: not empty ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}); "
                         "use --resume to continue that run or --force to replace it")


def check_config(cfg: TrainConfig) -> None:
    """Numbers that would waste a run (or crash late) are refused before any work."""
    for name, ok in (("epochs", cfg.epochs >= 1), ("batch_size", cfg.batch_size >= 1), ("lr", cfg.lr > 0 and math.isfinite(cfg.lr)),
                     ("dropout", 0 <= cfg.dropout < 1), ("alpha", cfg.alpha >= 0 and math.isfinite(cfg.alpha)),
                     ("limit", cfg.limit is None or cfg.limit >= 1), ("max_steps", cfg.max_steps is None or cfg.max_steps >= 1),
                     ("threads", cfg.threads is None or cfg.threads >= 1), ("weight_decay", cfg.weight_decay >= 0)):
        if not ok:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r} is out of range")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {cfg.device!r}: use auto, cpu or cuda")


def _check_split(split: dict, where: str) -> None:
    empty = [n for n in ("train", "val") if not split.get(n)]  # an empty test split only leaves test_mae out
    if empty:
        raise DataError(f"{where}: the {'/'.join(empty)} split is empty ({', '.join(f'{n} {len(v)}' for n, v in split.items())} faces); use more faces")


def _read_resume(last: Path, dev) -> dict:
    """OUT/last.pt (tensors and plain values only: weights_only=True), its keys checked; one-line errors."""
    try:
        st = torch.load(last, map_location=dev, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or crafted file
        raise DataError(f"{last}: not a readable training checkpoint ({type(e).__name__})") from None
    keys = ("model", "opt", "epoch", "step", "best", "history")
    if not isinstance(st, dict) or any(k not in st for k in keys) or not isinstance(st["epoch"], int) or not isinstance(st["history"], list):
        raise DataError(f"{last}: not a c3ae-edge training checkpoint (needs {', '.join(keys)})")
    return st


def _apply_resume(st: dict, last: Path, model, opt=None, ema=None, plateau=None) -> None:
    """Load a checked last.pt into the live objects (the model alone when called early, to fail before any work)."""
    try:
        model.load_state_dict(st["model"])
        if opt is not None:
            opt.load_state_dict(st["opt"])
        if ema is not None and st.get("ema"):
            ema.load_state_dict(st["ema"])
        if plateau is not None and st.get("plateau"):
            plateau.load_state_dict(st["plateau"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{last}: does not fit this run's model or optimiser ({str(e).splitlines()[0][:160]})") from None


def train(cfg: TrainConfig, resume: bool = False, log=print, force: bool = False) -> dict:
    rank, world, local_rank = _dist_info()
    check_config(cfg)
    check_out(Path(cfg.out), resume, force, cfg.split)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here")
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + 1000 * rank)
    out = Path(cfg.out)
    last = out / "last.pt"
    model = create_model(cfg.model, dropout=cfg.dropout)
    st = None
    if resume:  # read and fit last.pt before any data is read
        st = _read_resume(last, "cpu")
        _apply_resume(st, last, model)
    if cfg.init:
        from c3ae_edge.weights import load_into

        load_into(model, cfg.init, cfg.model)
        log(f"warm start from {cfg.init}")

    samples = load_dataset(cfg.data)
    if cfg.limit:
        sel = np.random.default_rng(cfg.seed).permutation(len(samples))[: cfg.limit]
        samples = [samples[i] for i in sorted(sel)]
    split_path = out / "split.json"
    if cfg.split:
        split = load_split(cfg.split, samples)
    elif resume and split_path.is_file():
        split = load_split(split_path, samples)
    else:
        split = stratified_split(samples, {"train": 1 - cfg.val_frac - cfg.test_frac, "val": cfg.val_frac, "test": cfg.test_frac}, cfg.seed)
    _check_split(split, cfg.split or cfg.data)
    spec = spec_for(model.cfg.crops)
    t0 = time.time()
    data = FaceData(samples, spec)
    log(f"decoded {len(data)} faces in {time.time() - t0:.0f}s; train {len(split['train'])}, val {len(split['val'])}, test {len(split['test'])}")

    model.to(dev)
    ema = None
    if cfg.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_idx = np.asarray(split["train"])
    steps_per_epoch = max(1, len(train_idx) // world // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=cfg.patience, threshold=cfg.min_delta, threshold_mode="abs") if cfg.schedule == "plateau" else None
    start_epoch, step, best, history = 0, 0, float("inf"), []
    if st is not None:
        _apply_resume(st, last, model, opt, ema, plateau)
        start_epoch, step, best, history = st["epoch"] + 1, st["step"], st["best"], st["history"]
        rng = np.random.default_rng([cfg.seed, rank, start_epoch])
        log(f"resumed from {last} at epoch {start_epoch}")
    if rank == 0:  # written once every input (data, split, --init, last.pt) has been read and checked
        out.mkdir(parents=True, exist_ok=True)
        if cfg.split:  # verbatim: the split's own seed, not this run's training seed
            if Path(cfg.split).resolve() != split_path.resolve():
                shutil.copyfile(cfg.split, split_path)
        elif not (resume and split_path.is_file()):
            save_split(split_path, samples, split, cfg.seed, cfg.data)
        write_atomic(out / "config.json", json.dumps(asdict(cfg), indent=1))

    net: nn.Module = _TrainView(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    elif cfg.compile:
        net = torch.compile(net)
    aug = Augment(cfg.jitter, cfg.erase_p)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = rng.permutation(train_idx) if world == 1 else np.random.default_rng([cfg.seed, epoch]).permutation(train_idx)[rank::world]
        t_ep = time.time()
        sums, n, step = _train_epoch(net, model, opt, data, perm, cfg.batch_size, steps_per_epoch, aug, rng, dev,
                                     lr_at if plateau is None else None, step, cfg.alpha, cfg.l1_w1, ema, cfg.max_steps)
        evaluated = ema.module if ema is not None else model
        if rank == 0:
            val_mae, _ = evaluate_mae(evaluated, data, split["val"])
            if not math.isfinite(val_mae) or not math.isfinite(sums["loss"]):
                raise DataError(f"{out}: epoch {epoch + 1}: loss or validation MAE is not finite (training diverged; lower --lr)")
            if plateau is not None:
                plateau.step(val_mae)
            rec = {"epoch": epoch, "step": step, "loss": sums["loss"] / max(n, 1), "train_mae": sums["mae"] / max(n, 1),
                   "val_mae": val_mae, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t_ep, 1)}
            history.append(rec)
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {rec['loss']:.3f}  train MAE {rec['train_mae']:.2f}  val MAE {val_mae:.3f}  lr {rec['lr']:.2e}  {rec['seconds']:.0f}s")
            meta = {"epoch": epoch, "val_mae": val_mae, "data": cfg.data, "seed": cfg.seed, "config": asdict(cfg)}
            if val_mae < best:
                best = val_mae
                save_weights(out / "best.pt", cfg.model, evaluated.state_dict(), spec, meta)
            save_weights(out / "final.pt", cfg.model, evaluated.state_dict(), spec, meta)
            atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict() if ema else None,
                         "plateau": plateau.state_dict() if plateau else None, "epoch": epoch, "step": step,
                         "best": best, "history": history}, last)
            write_atomic(out / "history.json", json.dumps(history, indent=1))
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
        if cfg.max_steps and step >= cfg.max_steps:
            break
    # only rank 0 validates: the other ranks have no best (inf), which strict JSON cannot print
    result = {"best_val_mae": best if math.isfinite(best) else None, "epochs_run": len(history), "out": str(out)}
    if rank == 0:
        best_path = out / "best.pt"
        from c3ae_edge.weights import load_model

        m, _, _ = load_model(str(best_path))
        m.to(dev)
        test_mae = evaluate_mae(m, data, split["test"])[0] if split["test"] else None
        result["test_mae"] = test_mae
        result["train_seconds"] = round(sum(h["seconds"] for h in history), 1)
        write_atomic(out / "result.json", json.dumps(result, indent=1))
        log(f"best val MAE {best:.3f}; " + (f"test MAE {test_mae:.3f} ({len(split['test'])} faces)" if test_mae is not None else "no test faces"))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result
