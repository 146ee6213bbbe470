"""One training loop with a progress bar, evaluation, and a content-addressed checkpoint cache.

The cache key is a SHA-256 of everything that determines the trained weights: the model's
configuration, a hash of its *initial* weights, the data (its ``spec`` when it has one, else a
hash of the tensors), the training configuration, the loss (``loss_id``) and the seed. A second
run of a study therefore reuses every model it trained before, and a change to any input trains
anew. Checkpoints hold plain tensors and are read through :mod:`studylib.core.cache`
(``torch.load(..., weights_only=True)``); a file that does not load is discarded, the terminal
and the notebook say so, and the model is trained again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .core import paths
from .core.cache import load_entry, save_entry
from .core.io import cache_key
from .core.runtime import progress as progress_bar_over
from .core.runtime import select_device
from .models import eval_mode

CACHE_VERSION = 1
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Args:
        epochs: passes over the training split (default 5).
        batch_size: minibatch size (default 128).
        lr: learning rate (default 1e-3).
        optimizer: ``"adam"`` | ``"sgd"`` (momentum 0.9, nesterov) (default ``"adam"``).
        weight_decay: L2 weight decay (default 0.0).
        schedule: ``"none"`` | ``"cosine"`` (cosine annealing over all steps) (default none).
    """

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "none"

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("none", "cosine"):
            raise ValueError(f"schedule must be 'none' or 'cosine', got {self.schedule!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0")


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default objective: mean cross-entropy of ``model(x)`` against ``y``."""
    return F.cross_entropy(model(x), y)


def _tensor_digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _split_of(data: Any):
    return data.train if hasattr(data, "train") else data


def data_identity(data: Any) -> Any:
    """What identifies a data set in a cache key: its ``spec`` if it has one, else a digest."""
    spec = getattr(data, "spec", None)
    if spec is not None:
        return spec
    split = _split_of(data)
    return {"digest": _tensor_digest(split.x, split.y)}


def checkpoint_key(model: nn.Module, data: Any, config: TrainConfig, seed: int,
                   loss_id: str) -> str:
    """The cache key (hex SHA-256) of training ``model`` on ``data`` with ``config``."""
    model_cfg = getattr(model, "config", None) or {"class": type(model).__name__,
                                                   "repr": repr(model)}
    state = model.state_dict()
    blob = {
        "version": CACHE_VERSION,
        "model": model_cfg,
        "init": _tensor_digest(*[state[k] for k in sorted(state)]),
        "data": data_identity(data),
        "train": asdict(config),
        "loss": loss_id,
        "seed": int(seed),
    }
    return cache_key(blob)


def _is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "state_dict" in obj


def _load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None (missing, or unreadable: then deleted and announced
    on the terminal, so the model is trained again)."""
    return load_entry(path, what="checkpoint", check=_is_checkpoint)


def fit(model: nn.Module, data: Any, config: TrainConfig, *, seed: int,
        device: str | torch.device = "cpu", loss_fn: LossFn | None = None,
        loss_id: str = "cross_entropy", cache: bool = True, progress: bool = True,
        desc: str | None = None, cache_dir: str | Path | None = None,
        trainable: Callable[[nn.Module], list[nn.Parameter]] | None = None,
        track: Any | None = None) -> nn.Module:
    """Train ``model`` in place (or load it from the checkpoint cache); return it in eval mode.

    Args:
        model: the network, freshly built (its initial weights are part of the cache key).
        data: a ``studylib.data.DataBundle`` (its ``train`` split is used and its ``spec``
            identifies it) or a ``Split`` (identified by a digest of its tensors).
        config: a :class:`TrainConfig`.
        seed: seeds the minibatch order and any randomness inside ``loss_fn``.
        device: where to train (``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``).
        loss_fn: ``loss_fn(model, x, y) -> scalar``; default mean cross-entropy. Adversarial
            training, gradient regularisation etc. are loss functions.
        loss_id: a string naming ``loss_fn`` *and all its parameters*
            (e.g. ``"pgd_at(eps=0.1,steps=7)"``); it is part of the cache key, so two different
            losses must never share an id. Required when ``loss_fn`` is given.
        cache: read and write the checkpoint cache (default True).
        progress: show a tqdm bar over epochs (default True).
        desc: the bar's label.
        cache_dir: where checkpoints live (default ``<cache root>/checkpoints``, the cache
            root being ``$STUDYLIB_CACHE`` or ``outputs/cache``).
        trainable: optional function returning the parameters to optimise (default: all that
            require grad), e.g. to train only a classifier head.
        track: optional ``Split`` (or bundle: its test split) whose accuracy is measured after
            every epoch, in eval mode and without gradients, so the training run itself is
            unchanged (no random numbers are drawn, BatchNorm statistics are not updated).
            Stored in the checkpoint with a digest of the split; a cached checkpoint without
            them for this split is trained again.

    Returns:
        The trained model, on ``device``, in eval mode, with ``model.history`` (per-epoch mean
        training loss), ``model.from_cache`` (bool) and, with ``track``,
        ``model.track_accuracy`` (accuracy on it after each epoch; the last entry is the
        returned model's).
    """
    if loss_fn is not None and loss_id == "cross_entropy":
        raise ValueError("pass a loss_id naming your loss_fn and its parameters")
    loss_fn = loss_fn or cross_entropy_loss
    device = select_device(device)
    split = _split_of(data)
    key = checkpoint_key(model, data, config, seed, loss_id)
    path = Path(cache_dir) if cache_dir else paths.CHECKPOINT_DIR
    path = path / f"{key}.pt"
    track_split = None if track is None else (track.test if hasattr(track, "test") else track)
    track_digest = None if track_split is None else _tensor_digest(track_split.x, track_split.y)
    if cache:
        ckpt = _load_checkpoint(path)
        tracked = (ckpt or {}).get("tracked") or {}
        if ckpt is not None and (track_digest is None or tracked.get("digest") == track_digest):
            model.load_state_dict(ckpt["state_dict"])
            model.history = list(ckpt.get("history", []))  # type: ignore[attr-defined]
            if track_digest is not None:
                model.track_accuracy = list(tracked["accuracy"])  # type: ignore[attr-defined]
            model.from_cache = True  # type: ignore[attr-defined]
            return model.to(device).eval()

    model.to(device).train()
    params = trainable(model) if trainable else [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True,
                              weight_decay=config.weight_decay)
    n = len(split.y)
    steps_per_epoch = max(1, -(-n // config.batch_size))
    sched = None
    if config.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(int(seed))
    history: list[float] = []
    track_accuracy: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        epochs = range(config.epochs)
        bar = progress_bar_over(epochs, desc=desc or "train") if progress else epochs
        for _ in bar:
            order = torch.randperm(n, generator=gen)
            total, count = 0.0, 0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                x, y = split.x[idx].to(device), split.y[idx].to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model, x, y)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            history.append(total / max(count, 1))
            if track_split is not None:
                track_accuracy.append(evaluate(model, track_split, device)["accuracy"])
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]:.3f}")
    model.eval()
    model.history = history  # type: ignore[attr-defined]
    model.from_cache = False  # type: ignore[attr-defined]
    entry: dict[str, Any] = {"history": history}
    if track_digest is not None:
        model.track_accuracy = track_accuracy  # type: ignore[attr-defined]
        entry["tracked"] = {"digest": track_digest, "accuracy": track_accuracy}
    if cache:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_entry(path, {"state_dict": state, **entry}, what="checkpoint")
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, device: str | torch.device = "cpu",
                   batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, computed in batches; returned on the CPU."""
    device = select_device(device)
    with eval_mode(model):
        outs = [model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate(model: nn.Module, split: Any, device: str | torch.device = "cpu",
             batch_size: int = 512) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a ``Split`` (or a bundle's test split)."""
    split = split.test if hasattr(split, "test") else split
    logits = predict_logits(model, split.x, device, batch_size)
    y = split.y.cpu()
    return {"accuracy": float((logits.argmax(1) == y).float().mean()),
            "loss": float(F.cross_entropy(logits, y))}
