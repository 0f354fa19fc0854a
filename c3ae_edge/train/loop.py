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
from c3ae_edge.weights import TrainingMeta, atomic_save, save_weights

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
    # Sec. 4.2, final models: Adam, batch 50, lr 0.005, dropout 0.3, wd 1e-4, plateau (20, 5e-4), random erasing,
    # 600 epochs
    "paper": dict(
        epochs=600,
        batch_size=50,
        lr=0.005,
        dropout=0.3,
        weight_decay=1e-4,
        schedule="plateau",
        patience=20,
        min_delta=5e-4,
        ema=0.0,
        jitter=0.0,
    ),
    "paper-ablation": dict(
        epochs=160,
        batch_size=50,
        lr=0.002,
        dropout=0.2,
        weight_decay=1e-4,
        schedule="plateau",
        patience=10,
        min_delta=1e-4,
        ema=0.0,
        jitter=0.0,
    ),
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


def _train_epoch(
    net,
    model,
    opt,
    data: FaceData,
    perm,
    batch_size: int,
    steps: int,
    aug,
    rng,
    dev,
    lr_at,
    step: int,
    alpha: float,
    l1_w1: float,
    ema=None,
    max_steps: int | None = None,
) -> tuple[dict, int, int]:
    """One pass over ``perm``: returns summed loss/MAE, the number of batches and the new global step."""
    w1 = getattr(getattr(model, "head", None), "w1", None)
    batches = _prefetch(lambda b: data.batch(perm[b * batch_size : (b + 1) * batch_size], aug, rng), steps)
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


def finetune(
    model: nn.Module,
    data: FaceData,
    idx,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    alpha: float = 10.0,
    dev: torch.device | None = None,
) -> nn.Module:
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
        _, _, step = _train_epoch(
            net,
            model,
            opt,
            data,
            rng.permutation(idx),
            batch_size,
            steps,
            Augment(),
            rng,
            dev,
            lambda k: lr * 0.5 * (1 + math.cos(math.pi * k / total)),
            step,
            alpha,
            0.0,
        )
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
            x, _ = data.batch(idx[s : s + batch])
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
        probs = torch.cat(
            [model.forward_dist(data.batch(idx[s : s + 256])[0].to(dev))[1] for s in range(0, len(idx), 256)]
        )
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
        raise UsageError(
            f"{out}: not empty ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}); "
            "use --resume to continue that run or --force to replace it"
        )


def check_config(cfg: TrainConfig) -> None:
    """Numbers that would waste a run (or crash late) are refused before any work."""
    for name, ok in (
        ("epochs", cfg.epochs >= 1),
        ("batch_size", cfg.batch_size >= 1),
        ("lr", cfg.lr > 0 and math.isfinite(cfg.lr)),
        ("dropout", 0 <= cfg.dropout < 1),
        ("alpha", cfg.alpha >= 0 and math.isfinite(cfg.alpha)),
        ("limit", cfg.limit is None or cfg.limit >= 1),
        ("max_steps", cfg.max_steps is None or cfg.max_steps >= 1),
        ("threads", cfg.threads is None or cfg.threads >= 1),
        ("weight_decay", cfg.weight_decay >= 0),
    ):
        if not ok:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r} is out of range")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {cfg.device!r}: use auto, cpu or cuda")


def _check_split(split: dict, where: str) -> None:
    empty = [n for n in ("train", "val") if not split.get(n)]  # an empty test split only leaves test_mae out
    if empty:
        raise DataError(
            f"{where}: the {'/'.join(empty)} split is empty ({', '.join(f'{n} {len(v)}' for n, v in split.items())} "
            "faces); use more faces"
        )


def _read_resume(last: Path, dev) -> dict:
    """OUT/last.pt (tensors and plain values only: weights_only=True), its keys checked; one-line errors."""
    try:
        st = torch.load(last, map_location=dev, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or crafted file
        raise DataError(f"{last}: not a readable training checkpoint ({type(e).__name__})") from None
    keys = ("model", "opt", "epoch", "step", "best", "history")
    if (
        not isinstance(st, dict)
        or any(k not in st for k in keys)
        or not isinstance(st["epoch"], int)
        or not isinstance(st["history"], list)
    ):
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
        raise DataError(
            f"{last}: does not fit this run's model or optimiser ({str(e).splitlines()[0][:160]})"
        ) from None


class RunLock:
    """An exclusive, non-blocking lock on the run folder itself (flock on its descriptor: no lock file is left).
    A folder it had to create is removed again if the run leaves it empty (it failed before writing)."""

    def __init__(self, out: Path):
        self.out, self.fd, self.made = out, None, []

    def acquire(self) -> None:
        import fcntl

        if self.out.exists() and not self.out.is_dir():
            return  # check_out says what is wrong
        p = self.out
        while not p.exists() and p != p.parent:
            self.made.append(p)
            p = p.parent
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.out, os.O_RDONLY)
        except OSError as e:
            raise UsageError(f"{self.out}: cannot use as the run folder ({e.strerror})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd, self.made = None, []
            raise UsageError(
                f"{self.out}: another train run is writing this folder; wait for it or use another --out"
            ) from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        for p in self.made:
            try:
                p.rmdir()
            except OSError:  # not empty: the run wrote into it
                break
        self.made = []


class Trainer:
    """One run: setup (every input read and checked before OUT is written), epochs, validation + checkpoints on
    rank 0, and the final test of best.pt. Same config and seed -> same checkpoints."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print, force: bool = False):
        self.cfg, self.resume, self.log, self.force = cfg, resume, log, force
        self.rank, self.world, self.local_rank = _dist_info()
        self.out = Path(cfg.out)
        self.last = self.out / "last.pt"
        self.split_path = self.out / "split.json"
        self.lock = RunLock(self.out)

    def run(self) -> dict:
        try:
            self.setup()
            for epoch in range(self.start_epoch, self.cfg.epochs):
                self.epoch(epoch)
                if self.cfg.max_steps and self.step >= self.cfg.max_steps:
                    break
            result = self.final_test()
        finally:
            self.lock.release()
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
        return result

    def setup(self) -> None:
        check_config(self.cfg)
        if self.rank == 0:  # one run per folder: a second one fails at once (two runs left a mixed folder)
            self.lock.acquire()
        check_out(self.out, self.resume, self.force, self.cfg.split)
        self._device()
        torch.manual_seed(self.cfg.seed + self.rank)
        self.rng = np.random.default_rng(self.cfg.seed + 1000 * self.rank)
        self._model()
        self._data()
        self._optimiser()
        if self.rank == 0:  # written once every input (data, split, --init, last.pt) has been read and checked
            self._write_inputs()
        self._net()

    def _device(self) -> None:
        cfg = self.cfg
        dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device here")
        if self.world > 1:
            import torch.distributed as dist

            if dev.type == "cuda":
                dev = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(dev)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dev = dev

    def _model(self) -> None:
        """The model, last.pt read and fitted (--resume) and --init loaded, before any data is read."""
        cfg = self.cfg
        self.model = create_model(cfg.model, dropout=cfg.dropout)
        self.st = None
        if self.resume:
            self.st = _read_resume(self.last, "cpu")
            _apply_resume(self.st, self.last, self.model)
        if cfg.init:
            from c3ae_edge.weights import load_into

            load_into(self.model, cfg.init, cfg.model)
            self.log(f"warm start from {cfg.init}")

    def _data(self) -> None:
        cfg = self.cfg
        samples = load_dataset(cfg.data)
        if cfg.limit:
            sel = np.random.default_rng(cfg.seed).permutation(len(samples))[: cfg.limit]
            samples = [samples[i] for i in sorted(sel)]
        if cfg.split:
            split = load_split(cfg.split, samples)
        elif self.resume and self.split_path.is_file():
            split = load_split(self.split_path, samples)
        else:
            fracs = {"train": 1 - cfg.val_frac - cfg.test_frac, "val": cfg.val_frac, "test": cfg.test_frac}
            split = stratified_split(samples, fracs, cfg.seed)
        _check_split(split, cfg.split or cfg.data)
        self.samples, self.split = samples, split
        self.spec = spec_for(self.model.cfg.crops)
        t0 = time.time()
        self.data = FaceData(samples, self.spec)
        self.log(
            f"decoded {len(self.data)} faces in {time.time() - t0:.0f}s; train {len(split['train'])}, "
            f"val {len(split['val'])}, test {len(split['test'])}"
        )

    def _optimiser(self) -> None:
        """EMA, AdamW, the schedule (warm-up + cosine, or plateau), and the resumed state if any."""
        cfg, model = self.cfg, self.model
        model.to(self.dev)
        self.ema = None
        if cfg.ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.train_idx = np.asarray(self.split["train"])
        self.steps_per_epoch = max(1, len(self.train_idx) // self.world // cfg.batch_size)
        self.total = cfg.epochs * self.steps_per_epoch
        self.warm = int(cfg.warmup_epochs * self.steps_per_epoch)
        self.plateau = (
            None
            if cfg.schedule != "plateau"
            else torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.opt, patience=cfg.patience, threshold=cfg.min_delta, threshold_mode="abs"
            )
        )
        self.start_epoch, self.step, self.best, self.history = 0, 0, float("inf"), []
        if self.st is not None:
            st = self.st
            _apply_resume(st, self.last, model, self.opt, self.ema, self.plateau)
            self.start_epoch, self.step = st["epoch"] + 1, st["step"]
            self.best, self.history = st["best"], st["history"]
            self.rng = np.random.default_rng([cfg.seed, self.rank, self.start_epoch])
            self.log(f"resumed from {self.last} at epoch {self.start_epoch}")

    def lr_at(self, step: int) -> float:
        cfg, warm = self.cfg, self.warm
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, self.total - warm))))

    def _write_inputs(self) -> None:
        """OUT with the split (verbatim when given: its own seed, not this run's) and config.json."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.split:
            if Path(cfg.split).resolve() != self.split_path.resolve():
                shutil.copyfile(cfg.split, self.split_path)
        elif not (self.resume and self.split_path.is_file()):
            save_split(self.split_path, self.samples, self.split, cfg.seed, cfg.data)
        write_atomic(self.out / "config.json", json.dumps(asdict(self.cfg), indent=1))

    def _net(self) -> None:
        net: nn.Module = _TrainView(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[self.dev.index] if self.dev.type == "cuda" else None)
        elif self.cfg.compile:
            net = torch.compile(net)
        self.net = net
        self.aug = Augment(self.cfg.jitter, self.cfg.erase_p)

    def epoch(self, epoch: int) -> None:
        """One pass over the train split, then (rank 0) validation and checkpoints; ranks meet at a barrier."""
        cfg, world = self.cfg, self.world
        self.model.train()
        perm = (
            self.rng.permutation(self.train_idx)
            if world == 1
            else np.random.default_rng([cfg.seed, epoch]).permutation(self.train_idx)[self.rank :: world]
        )
        t_ep = time.time()
        sums, n, self.step = _train_epoch(
            self.net,
            self.model,
            self.opt,
            self.data,
            perm,
            cfg.batch_size,
            self.steps_per_epoch,
            self.aug,
            self.rng,
            self.dev,
            self.lr_at if self.plateau is None else None,
            self.step,
            cfg.alpha,
            cfg.l1_w1,
            self.ema,
            cfg.max_steps,
        )
        if self.rank == 0:
            self.validate(epoch, sums, n, t_ep)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()

    def validate(self, epoch: int, sums: dict, n: int, t_ep: float) -> None:
        """Validation MAE (of the EMA model if any), the history row, best.pt / final.pt / last.pt / history.json."""
        cfg, out = self.cfg, self.out
        evaluated = self.ema.module if self.ema is not None else self.model
        val_mae, _ = evaluate_mae(evaluated, self.data, self.split["val"])
        if not math.isfinite(val_mae) or not math.isfinite(sums["loss"]):
            raise DataError(
                f"{out}: epoch {epoch + 1}: loss or validation MAE is not finite (training diverged; lower --lr)"
            )
        if self.plateau is not None:
            self.plateau.step(val_mae)
        rec = {
            "epoch": epoch,
            "step": self.step,
            "loss": sums["loss"] / max(n, 1),
            "train_mae": sums["mae"] / max(n, 1),
            "val_mae": val_mae,
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": round(time.time() - t_ep, 1),
        }
        self.history.append(rec)
        self.log(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {rec['loss']:.3f}  train MAE {rec['train_mae']:.2f}  "
            f"val MAE {val_mae:.3f}  lr {rec['lr']:.2e}  {rec['seconds']:.0f}s"
        )
        meta = TrainingMeta(epoch=epoch, val_mae=val_mae, data=cfg.data, seed=cfg.seed, config=asdict(cfg))
        if val_mae < self.best:
            self.best = val_mae
            save_weights(out / "best.pt", cfg.model, evaluated.state_dict(), self.spec, meta)
        save_weights(out / "final.pt", cfg.model, evaluated.state_dict(), self.spec, meta)
        atomic_save(
            {
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "plateau": self.plateau.state_dict() if self.plateau else None,
                "epoch": epoch,
                "step": self.step,
                "best": self.best,
                "history": self.history,
            },
            self.last,
        )
        write_atomic(out / "history.json", json.dumps(self.history, indent=1))

    def final_test(self) -> dict:
        """best.pt reloaded from disk and tested (rank 0); result.json. The other ranks have no best (inf)."""
        best, history = self.best, self.history
        result = {
            "best_val_mae": best if math.isfinite(best) else None,
            "epochs_run": len(history),
            "out": str(self.out),
        }
        if self.rank != 0:
            return result
        from c3ae_edge.weights import load_model

        m, _, _ = load_model(str(self.out / "best.pt"))
        m.to(self.dev)
        test = self.split["test"]
        test_mae = evaluate_mae(m, self.data, test)[0] if test else None
        result["test_mae"] = test_mae
        result["train_seconds"] = round(sum(h["seconds"] for h in history), 1)
        write_atomic(self.out / "result.json", json.dumps(result, indent=1))
        tested = f"test MAE {test_mae:.3f} ({len(test)} faces)" if test_mae is not None else "no test faces"
        self.log(f"best val MAE {best:.3f}; {tested}")
        return result


def train(cfg: TrainConfig, resume: bool = False, log=print, force: bool = False) -> dict:
    """Train ``cfg`` into ``cfg.out`` (see Trainer); -> the result (best val MAE, epochs run, test MAE)."""
    return Trainer(cfg, resume, log, force).run()
