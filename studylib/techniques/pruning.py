"""Taylor-expansion importance for structural pruning (Molchanov et al., CVPR 2019).

The method, as implemented here:

- **Gates.** :class:`ChannelGates` puts a per-channel multiplicative gate ``z = 1`` on every
  prunable channel group of an existing network through forward hooks (no special model class).
  The gate sits after the BatchNorm that follows a conv/linear layer, or after the layer itself
  where there is no BatchNorm. The groups come from torch-pruning's ``DependencyGraph``: channels
  that must be removed together (the residual stream of a ResNet stage: stem or shortcut conv
  plus every block's last conv) share *one* gate applied at each place that writes into the
  stream; its scores are divided by the number of places sharing it (``Gate.n_shared``).
  Gates are plain tensors, not ``nn.Parameter``: ``model.parameters()`` and so every optimiser
  never sees them.
- **Criteria** (:data:`CRITERIA`), each computed per minibatch and averaged over minibatches:
  ``taylor_fo`` ``(dL/dz)^2``; ``taylor_so`` ``(-g z + 0.5 z^2 H_zz)^2`` with the exact diagonal
  of the gate Hessian (double backward, one backward of the gradient per channel, see
  :func:`gate_hessian_diagonal`); ``taylor_fo_weight`` ``sum (w g)^2`` over the weights (and
  bias) of the filter's conv/linear layers; ``weight_magnitude`` ``sum w^2``; ``bn_scale``
  ``|gamma|`` (NaN for gates without BatchNorm); ``random``; and the ``oracle``
  ``|L - L(z_c = 0)|`` on the same minibatches (:func:`oracle_loss_change`).
- **Iterative pruning** (:func:`prune_iteratively`): train with the gates on; every
  ``frequency`` minibatches average the criterion over those minibatches, smooth it with
  momentum 0.9 across pruning steps, rank all active channels globally (no per-layer
  normalisation) and zero the ``neurons_per_step`` lowest gates.
- **Real removal** (:meth:`ChannelGates.pruned_copy`): torch-pruning removes the zeroed channels
  physically (its dependency graph removes coupled residual channels together); FLOPs and
  parameters come from ``torch_pruning.utils.count_ops_and_params``.

Why our own code rather than ``torch_pruning.pruner.MetaPruner`` with ``TaylorImportance``:
torch-pruning scores weights (``|w g|`` summed over a group), it has no gates, no second-order
gate term and no oracle, and its pruner normalises per group; the paper's method is the gate
gradient ranked globally. torch-pruning's ranking is compared with ours in
:func:`torch_pruning_taylor_scores`.

This module holds the method only; study 06 (its per-seed run, records, claims and figures)
is :mod:`studylib.studies.taylor_pruning`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import eval_mode
from ..stats.ranking import kendall_tau, spearman_rho
from ..training import cross_entropy_loss

CRITERIA = ("taylor_fo", "taylor_so", "taylor_fo_weight", "weight_magnitude", "bn_scale", "random")
"""Importance criteria (the ``oracle`` is computed separately by :func:`oracle_loss_change`)."""

_CHEAP = ("taylor_fo", "taylor_fo_weight", "weight_magnitude", "bn_scale", "random")
_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
_PRODUCER_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _check_criterion(name: str, allowed: Sequence[str] = CRITERIA) -> str:
    if name not in allowed:
        raise ValueError(f"criterion must be one of {list(allowed)}, got {name!r}")
    return name


# ============================================================================ gates


@dataclass(eq=False)
class Gate:
    """One gate vector: ``z`` (shape ``(channels,)``) multiplies the outputs of ``modules``.

    Attributes:
        name: a readable label (the module names it covers, joined by ``+``).
        z: the gate values (1 = kept, 0 = pruned); a leaf tensor with ``requires_grad``.
        modules / module_names: where the gate is applied (BatchNorms, or conv/linear layers
            without one), one entry per place that writes these channels.
        producers / producer_names: the conv/linear layers whose output channels the gate
            controls (a filter's weights for ``taylor_fo_weight`` and ``weight_magnitude``).
        bns: the BatchNorms of those channels (for ``bn_scale``); empty if none.
        n_shared: how many places share the gate (``len(modules)``); scores are divided by it.
    """

    name: str
    z: torch.Tensor
    modules: list[nn.Module]
    module_names: list[str]
    producers: list[nn.Module]
    producer_names: list[str]
    bns: list[nn.Module] = field(default_factory=list)

    @property
    def n_shared(self) -> int:
        return len(self.modules)

    @property
    def channels(self) -> int:
        return int(self.z.numel())


def _final_layer(model: nn.Module, example_inputs: torch.Tensor) -> nn.Module | None:
    with eval_mode(model), torch.no_grad():  # leave BatchNorm running statistics untouched
        out = model(example_inputs)
    n_out = out.shape[-1] if out.dim() > 1 else out.numel()
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == n_out:
            last = m
    return last


class ChannelGates:
    """Per-channel multiplicative gates on every prunable channel group of ``model``.

    Args:
        model: any ``nn.Module`` made of conv / linear / BatchNorm layers that torch-pruning can
            trace. It is changed only by forward hooks (see :meth:`remove`).
        example_inputs: a small input batch used to trace the network (e.g. ``x[:2]``).
        ignored_layers: layers whose output channels are never pruned. Default: the output
            layer (the last ``nn.Linear`` whose width equals the model's output width).
        include_linear: gate hidden ``nn.Linear`` neurons as well as conv filters (default True).

    Example:
        >>> gates = ChannelGates(model, x[:2])
        >>> gates.n_channels, [g.name for g in gates.gates]
        >>> gates.zero_channels([0, 5]); pruned = gates.pruned_copy()
    """

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor, *,
                 ignored_layers: Iterable[nn.Module] | None = None,
                 include_linear: bool = True) -> None:
        import torch_pruning as tp

        self.model = model
        self.example_inputs = example_inputs.detach()
        if ignored_layers is None:
            last = _final_layer(model, self.example_inputs)
            ignored = [last] if last is not None else []
        else:
            ignored = list(ignored_layers)
        self.ignored_layers = ignored
        self.include_linear = bool(include_linear)
        names = {m: n for n, m in model.named_modules()}
        self._names = names
        roots = (nn.Conv2d, nn.Conv1d, nn.Linear) if include_linear else (nn.Conv2d, nn.Conv1d)
        with eval_mode(model):
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=self.example_inputs,
                                                        verbose=False)
        device = next(model.parameters()).device
        self.gates: list[Gate] = []
        for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=roots):
            producers, bns = [], []
            for dep, _ in group:
                mod = dep.target.module
                if not dg.is_out_channel_pruning_fn(dep.handler):
                    continue
                if isinstance(mod, _PRODUCER_TYPES) and mod not in producers:
                    producers.append(mod)
                elif isinstance(mod, _BN_TYPES) and mod not in bns:
                    bns.append(mod)
            if not producers:
                continue
            places = []
            for p in producers:  # the BatchNorm right after a producer, else the producer
                after = [o.module for o in dg.module2node[p].outputs
                         if isinstance(o.module, _BN_TYPES) and o.module in bns]
                places.append(after[0] if after else p)
            channels = dg.get_out_channels(producers[0])
            z = torch.ones(int(channels), device=device, requires_grad=True)
            place_names = [names[m] for m in places]
            self.gates.append(Gate(name="+".join(place_names), z=z, modules=places,
                                   module_names=place_names, producers=producers,
                                   producer_names=[names[m] for m in producers], bns=bns))
        if not self.gates:
            raise ValueError("found no prunable channel group in the model")
        order = {m: i for i, m in enumerate(model.modules())}
        self.gates.sort(key=lambda g: min(order[p] for p in g.producers))  # network order
        self.offsets = np.cumsum([0] + [g.channels for g in self.gates])
        self._handles: list[Any] = []
        self._attach()

    # -- hooks ------------------------------------------------------------------------------
    def _attach(self) -> None:
        if self._handles:
            return
        for gate in self.gates:
            for mod in gate.modules:
                self._handles.append(mod.register_forward_hook(self._make_hook(gate.z)))

    @staticmethod
    def _make_hook(z: torch.Tensor):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            shape = (1, -1) + (1,) * (output.dim() - 2)
            return output * z.view(shape)
        return hook

    def remove(self) -> None:
        """Remove the hooks (the model computes as if every gate were 1)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextmanager
    def suspended(self):
        """Context in which the hooks are off (e.g. to deep-copy or trace the bare model)."""
        on = bool(self._handles)
        self.remove()
        try:
            yield self.model
        finally:
            if on:
                self._attach()

    # -- flat views -------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        """Total number of gated channels."""
        return int(self.offsets[-1])

    def layer_index(self) -> np.ndarray:
        """For each flat channel, the index of its gate in :attr:`gates`."""
        return np.repeat(np.arange(len(self.gates)), [g.channels for g in self.gates])

    def values(self) -> torch.Tensor:
        """All gate values concatenated (a detached CPU copy)."""
        return torch.cat([g.z.detach().cpu() for g in self.gates])

    def active(self) -> np.ndarray:
        """Boolean array: which flat channels are still on (gate != 0)."""
        return self.values().numpy() != 0

    def set_values(self, values: torch.Tensor | np.ndarray) -> None:
        """Set every gate from a flat vector of length :attr:`n_channels`."""
        v = torch.as_tensor(np.asarray(values, dtype=np.float32))
        if v.numel() != self.n_channels:
            raise ValueError(f"values must have {self.n_channels} entries, got {v.numel()}")
        with torch.no_grad():
            for g, lo, hi in zip(self.gates, self.offsets[:-1], self.offsets[1:], strict=True):
                g.z.copy_(v[lo:hi].to(g.z.device))

    def reset(self) -> None:
        """Turn every gate back on (z = 1)."""
        self.set_values(np.ones(self.n_channels, dtype=np.float32))

    def locate(self, flat_index: int) -> tuple[int, int]:
        """``(gate index, channel)`` of a flat channel index."""
        if not 0 <= flat_index < self.n_channels:
            raise ValueError(f"flat_index must be in [0, {self.n_channels}), got {flat_index}")
        gi = int(np.searchsorted(self.offsets, flat_index, side="right") - 1)
        return gi, int(flat_index - self.offsets[gi])

    def zero_channels(self, flat_indices: Iterable[int]) -> None:
        """Set the gates of the given flat channels to 0 (prune them)."""
        with torch.no_grad():
            for f in flat_indices:
                gi, c = self.locate(int(f))
                self.gates[gi].z[c] = 0.0

    def zero_grad(self) -> None:
        for g in self.gates:
            g.z.grad = None

    def gate_grads(self) -> torch.Tensor:
        """``dL/dz`` of the last backward, flat (zeros where no gradient arrived)."""
        return torch.cat([(g.z.grad if g.z.grad is not None else torch.zeros_like(g.z))
                          .detach().cpu() for g in self.gates])

    def kept_per_layer(self) -> dict[str, int]:
        """Active channels per gate name."""
        act = self.active()
        return {g.name: int(act[lo:hi].sum())
                for g, lo, hi in zip(self.gates, self.offsets[:-1], self.offsets[1:], strict=True)}

    def mask_digest(self) -> str:
        """A short hash of the on/off pattern (enters cache keys)."""
        return hashlib.sha256(self.active().tobytes()).hexdigest()[:16]

    # -- physical removal ------------------------------------------------------------------
    def pruned_copy(self) -> nn.Module:
        """A deep copy of the model with every zeroed channel removed physically (no hooks).

        torch-pruning's ``DependencyGraph`` removes each gate's zeroed channels from all coupled
        layers (the producers, their BatchNorms and the consumers' input channels). In eval
        mode its outputs equal the gated model's.
        """
        import torch_pruning as tp

        with self.suspended():
            pruned = copy.deepcopy(self.model)
        with eval_mode(pruned):
            example = self.example_inputs.to(next(pruned.parameters()).device)
            dg = tp.DependencyGraph().build_dependency(pruned, example_inputs=example,
                                                        verbose=False)
            act = self.active()
            for g, lo, hi in zip(self.gates, self.offsets[:-1], self.offsets[1:], strict=True):
                idxs = [int(i) for i in np.flatnonzero(~act[lo:hi])]
                if not idxs:
                    continue
                if len(idxs) >= g.channels:
                    raise ValueError(f"gate {g.name!r} has every channel zeroed; keep at least one")
                root = pruned.get_submodule(g.producer_names[0])
                fn = dg.get_pruner_of_module(root).prune_out_channels
                group = dg.get_pruning_group(root, fn, idxs)
                group.prune()
        return pruned


# ============================================================================ criteria


def _param_scores(gates: ChannelGates, kind: str) -> torch.Tensor:
    """Per-channel weight scores: ``weight_magnitude`` / ``taylor_fo_weight`` / ``bn_scale``."""
    out = []
    for g in gates.gates:
        if kind == "bn_scale":
            if not g.bns:
                out.append(torch.full((g.channels,), float("nan")))
                continue
            s = sum(bn.weight.detach().abs().cpu() for bn in g.bns)
            out.append(s / len(g.bns))
            continue
        s = torch.zeros(g.channels)
        for p in g.producers:
            tensors = [p.weight] + ([p.bias] if p.bias is not None else [])
            for t in tensors:
                w = t.detach().reshape(t.shape[0], -1)
                if kind == "weight_magnitude":
                    s += w.pow(2).sum(1).cpu()
                else:  # taylor_fo_weight
                    if t.grad is None:
                        continue
                    s += (w * t.grad.detach().reshape(t.shape[0], -1)).pow(2).sum(1).cpu()
        out.append(s / g.n_shared)
    return torch.cat(out)


def _shared_divisor(gates: ChannelGates) -> torch.Tensor:
    div = getattr(gates, "_divisor", None)
    if div is None:  # computed once: the sharing never changes
        div = torch.cat([torch.full((g.channels,), float(g.n_shared)) for g in gates.gates])
        gates._divisor = div
    return div


def gate_grads_from_params(gates: ChannelGates) -> torch.Tensor:
    """``dL/dz`` at ``z = 1`` computed from parameter gradients only (no gate hook needed).

    A gate after a BatchNorm scales ``gamma * xhat + beta``, so ``dL/dz = gamma g_gamma +
    beta g_beta``; a gate after a conv/linear layer without BatchNorm scales ``W x + b``, so
    ``dL/dz = sum_s w_s g_s`` over the filter's weights and bias (the paper's
    ``(sum_s g_s w_s)``); a shared gate sums its places. Equals :meth:`ChannelGates.gate_grads`
    wherever the gate is 1, and lets a training loop score channels with the hooks removed.
    Read after ``loss.backward()``; flat CPU tensor.
    """
    out = []
    for g in gates.gates:
        total = torch.zeros(g.channels)
        for place in g.modules:
            for t in (place.weight, place.bias):
                if t is None or t.grad is None:
                    continue
                total += (t.detach() * t.grad.detach()).reshape(t.shape[0], -1).sum(1).cpu()
        out.append(total)
    return torch.cat(out)


def minibatch_scores(gates: ChannelGates, criteria: Sequence[str], *,
                     hessian_diag: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Scores of one minibatch, read after ``loss.backward()`` (flat, one entry per channel).

    Args:
        gates: the :class:`ChannelGates` of the model that was just back-propagated.
        criteria: names from :data:`CRITERIA`; ``taylor_so`` needs ``hessian_diag``.
        hessian_diag: the diagonal of ``d2L/dz2`` on this minibatch (from
            :func:`gate_hessian_diagonal`), flat.
        generator: the generator of the ``random`` criterion (default: torch's global one).

    Returns:
        ``{criterion: tensor (n_channels,)}`` on the CPU. Gate-based scores of a shared gate
        are divided by the number of places sharing it.
    """
    out: dict[str, torch.Tensor] = {}
    need_grad = {"taylor_fo", "taylor_so"} & set(criteria)
    g = gates.gate_grads() if need_grad else None
    div = _shared_divisor(gates)
    for c in criteria:
        _check_criterion(c)
        if c == "taylor_fo":
            out[c] = g.pow(2) / div
        elif c == "taylor_so":
            if hessian_diag is None:
                raise ValueError("taylor_so needs hessian_diag (see gate_hessian_diagonal)")
            z = gates.values()
            out[c] = (-g * z + 0.5 * z.pow(2) * hessian_diag.cpu()).pow(2) / div
        elif c == "random":
            out[c] = torch.rand(gates.n_channels, generator=generator)
        else:
            out[c] = _param_scores(gates, c)
    return out


def gate_hessian_diagonal(gates: ChannelGates, loss: torch.Tensor) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """Exact ``dL/dz`` and diagonal of ``d2L/dz2`` for every gate channel, by double backward.

    The first backward keeps its graph (``create_graph=True``); then one more backward of
    ``dL/dz_c`` per channel ``c`` gives the Hessian row of ``z_c`` restricted to its own gate,
    whose ``c``-th entry is kept. This is exact (no finite differences, no sampling) and costs
    one extra backward per channel; use it on a few minibatches, not in a training loop.

    Args:
        gates: the model's gates (their ``z`` must be part of ``loss``'s graph).
        loss: a scalar computed by the gated model.

    Returns:
        ``(grad, hessian_diag)``, both flat CPU tensors of length ``gates.n_channels``.
    """
    zs = [g.z for g in gates.gates]
    grads = torch.autograd.grad(loss, zs, create_graph=True, allow_unused=True)
    g_out, h_out = [], []
    for z, gz in zip(zs, grads, strict=True):
        if gz is None:
            g_out.append(torch.zeros(z.numel()))
            h_out.append(torch.zeros(z.numel()))
            continue
        h = torch.zeros(z.numel())
        if gz.requires_grad:
            for c in range(z.numel()):
                (row,) = torch.autograd.grad(gz[c], z, retain_graph=True, allow_unused=True)
                if row is not None:
                    h[c] = row[c].detach().cpu()
        g_out.append(gz.detach().cpu())
        h_out.append(h)
    return torch.cat(g_out), torch.cat(h_out)


@torch.no_grad()
def oracle_loss_change(model: nn.Module, gates: ChannelGates, x: torch.Tensor, y: torch.Tensor,
                       loss_fn: LossFn | None = None, *, signed: bool = False) -> torch.Tensor:
    """The true importance: ``|L(z) - L(z with channel c zeroed)|`` for every channel ``c``.

    Each active channel is switched off alone (one forward pass each) and restored. Channels
    already off get 0. Runs in the model's current mode (call ``model.eval()`` first for BN
    running statistics).

    Args:
        model, gates: the gated model.
        x, y: one minibatch (on the model's device).
        loss_fn: ``loss_fn(model, x, y) -> scalar`` (default mean cross-entropy).
        signed: return ``L(zeroed) - L`` without the absolute value (default False).

    Returns:
        Flat CPU tensor of length ``gates.n_channels``.
    """
    loss_fn = loss_fn or cross_entropy_loss
    base = float(loss_fn(model, x, y))
    out = torch.zeros(gates.n_channels, dtype=torch.float64)
    for gi, g in enumerate(gates.gates):
        lo = int(gates.offsets[gi])
        for c in range(g.channels):
            old = float(g.z[c])
            if old == 0.0:
                continue
            g.z[c] = 0.0
            try:
                diff = float(loss_fn(model, x, y)) - base
            finally:
                g.z[c] = old
            out[lo + c] = diff if signed else abs(diff)
    return out


@dataclass(frozen=True)
class ScoreEstimate:
    """Criteria and the oracle estimated over minibatches (:func:`estimate_scores`).

    Attributes:
        scores: name -> the estimate per channel (the mean over its minibatches, or their
            exponential moving average when ``momentum > 0``), float64.
        halves: name -> ``(even, odd)``: plain means over the even- and odd-numbered
            minibatches it was computed on (for :func:`split_half_reliability`; absent where a
            name was computed on fewer than 2 minibatches).
        n_batches, n_images: name -> how many minibatches and images went into it.
    """

    scores: dict[str, np.ndarray]
    halves: dict[str, tuple[np.ndarray, np.ndarray]]
    n_batches: dict[str, int]
    n_images: dict[str, int]


def split_half_reliability(halves: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Spearman rho between the two half-sample estimates of each score (even against odd
    minibatches), over the channels where both are finite: how reproducible its ranking is from
    half the data (no Spearman-Brown step-up). NaN where fewer than 3 channels are finite."""
    out = {}
    for k, (a, b) in halves.items():
        a, b = np.asarray(a, float), np.asarray(b, float)
        ok = np.isfinite(a) & np.isfinite(b)
        out[k] = spearman_rho(a[ok], b[ok]) if ok.sum() >= 3 else math.nan
    return out


def estimate_scores(model: nn.Module, gates: ChannelGates,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    criteria: Sequence[str] = CRITERIA, *, oracle: bool = True,
                    expensive_batches: int | None = None, momentum: float = 0.0,
                    loss_fn: LossFn | None = None, seed: int = 0,
                    progress: bool = False) -> ScoreEstimate:
    """Every criterion (and the oracle) estimated over the same minibatches, in eval mode.

    For each minibatch one forward/backward gives ``dL/dz`` and the weight gradients (the
    cheap criteria). The two criteria that cost one pass per channel, ``taylor_so`` (exact
    Hessian diagonal by double backward, :func:`gate_hessian_diagonal`) and the oracle (each
    channel switched off in turn, :func:`oracle_loss_change`), are computed on the first
    ``expensive_batches`` minibatches only (default: all), which are the same minibatches the
    cheap criteria use first.

    Args:
        model, gates: the gated model (put in eval mode here, restored afterwards).
        batches: iterable of ``(x, y)`` already on the model's device.
        criteria: names from :data:`CRITERIA` (default all).
        oracle: also compute ``oracle`` (``|dL|``) and ``oracle_signed`` (``L(zeroed) - L``).
        expensive_batches: minibatches for ``taylor_so`` and the oracle (default all).
        momentum: 0 (default) averages the per-minibatch scores; ``m`` in (0, 1) keeps the
            reference implementation's exponential moving average ``s <- m s + (1 - m) s_b``
            (started at the first minibatch's scores) instead.
        loss_fn: default mean cross-entropy.
        seed: seeds the ``random`` criterion.
        progress: show a progress bar over minibatches.
    """
    from ..core.runtime import progress as progress_bar

    for c in criteria:
        _check_criterion(c)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    loss_fn = loss_fn or cross_entropy_loss
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty")
    n_exp = len(batches) if expensive_batches is None else int(expensive_batches)
    if not 1 <= n_exp <= len(batches):
        raise ValueError(f"expensive_batches must be in [1, {len(batches)}], got {n_exp}")
    cheap = [c for c in criteria if c != "taylor_so"]
    ema: dict[str, torch.Tensor] = {}
    parts: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    images: dict[str, int] = {}
    it = progress_bar(batches, desc="score") if progress else batches
    try:
        for bi, (x, y) in enumerate(it):
            expensive = bi < n_exp
            model.zero_grad(set_to_none=True)
            gates.zero_grad()
            loss = loss_fn(model, x, y)
            hdiag = None
            names = list(criteria) if expensive else cheap
            if expensive and "taylor_so" in criteria:
                weight_params = [p for p in model.parameters() if p.requires_grad]
                gflat, hdiag = gate_hessian_diagonal(gates, loss)
                wgrads = torch.autograd.grad(loss, weight_params, allow_unused=True)
                for p, gp in zip(weight_params, wgrads, strict=True):
                    p.grad = gp
                with torch.no_grad():  # store dL/dz where minibatch_scores reads it
                    for g, lo, hi in zip(gates.gates, gates.offsets[:-1], gates.offsets[1:],
                                         strict=True):
                        g.z.grad = gflat[lo:hi].to(g.z.device).clone()
            else:
                loss.backward()
            scores = minibatch_scores(gates, names, hessian_diag=hdiag, generator=gen)
            if oracle and expensive:
                signed = oracle_loss_change(model, gates, x, y, loss_fn, signed=True)
                scores["oracle"] = signed.abs()
                scores["oracle_signed"] = signed
            for k, v in scores.items():
                v = v.double()
                even, odd = parts.setdefault(k, ([], []))
                (odd if len(even) > len(odd) else even).append(v)  # alternate the halves
                ema[k] = v if k not in ema else momentum * ema[k] + (1 - momentum) * v
                images[k] = images.get(k, 0) + len(y)
    finally:
        model.zero_grad(set_to_none=True)
        gates.zero_grad()
        model.train(was_training)
    means, halves, counts = {}, {}, {}
    for k, (even, odd) in parts.items():
        counts[k] = len(even) + len(odd)
        means[k] = (ema[k] if momentum > 0 else sum(even + odd) / counts[k]).numpy()
        if odd:
            halves[k] = ((sum(even) / len(even)).numpy(), (sum(odd) / len(odd)).numpy())
    return ScoreEstimate(scores=means, halves=halves, n_batches=counts, n_images=images)


def score_minibatches(model: nn.Module, gates: ChannelGates,
                      batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      criteria: Sequence[str] = CRITERIA, *, oracle: bool = True,
                      loss_fn: LossFn | None = None, seed: int = 0,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """Every criterion (and the oracle) averaged over the same minibatches, in eval mode: the
    ``scores`` of :func:`estimate_scores` with every criterion on every minibatch and no
    momentum. Returns ``{name: float64 array (n_channels,)}``."""
    return estimate_scores(model, gates, batches, criteria, oracle=oracle, loss_fn=loss_fn,
                           seed=seed, progress=progress).scores


def minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int, n_batches: int | None = None,
                *, seed: int = 0, device: str | torch.device = "cpu"):
    """Shuffled minibatches ``[(x_b, y_b), ...]`` of a split (seeded; at most ``n_batches``)."""
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(y), generator=gen)
    out = []
    for start in range(0, len(y), int(batch_size)):
        if n_batches is not None and len(out) >= n_batches:
            break
        idx = order[start:start + int(batch_size)]
        out.append((x[idx].to(device), y[idx].to(device)))
    return out


# ============================================================================ correlation


def rank_correlations(scores: dict[str, np.ndarray], reference: np.ndarray,
                      layer_index: np.ndarray | None = None,
                      layer_names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Spearman rho and Kendall tau of each criterion against ``reference`` (the oracle).

    Channels where a criterion is NaN (``bn_scale`` without BatchNorm) are left out of that
    criterion's correlation; ``n`` says how many were used.

    Args:
        scores: ``{criterion: array (n_channels,)}``.
        reference: the oracle, same length.
        layer_index: gate index of every channel (``ChannelGates.layer_index()``) for per-layer
            correlations (layers with fewer than 3 channels give NaN).
        layer_names: names of the layers (default ``"0"``, ``"1"``, ...).

    Returns:
        ``{criterion: {"spearman", "kendall", "n", "per_layer": {name: {"spearman",
        "kendall", "n"}}}}``.
    """
    ref = np.asarray(reference, dtype=float)

    def corr(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
            return {"spearman": math.nan, "kendall": math.nan, "n": int(a.size)}
        return {"spearman": spearman_rho(a, b), "kendall": kendall_tau(a, b), "n": int(a.size)}

    out: dict[str, dict[str, Any]] = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=float)
        if s.shape != ref.shape:
            raise ValueError(f"scores[{name!r}] has shape {s.shape}, reference {ref.shape}")
        entry: dict[str, Any] = corr(s, ref)
        if layer_index is not None:
            layers = np.unique(layer_index)
            names = list(layer_names) if layer_names is not None else [str(i) for i in layers]
            entry["per_layer"] = {names[int(li)]: corr(s[layer_index == li],
                                                       ref[layer_index == li])
                                  for li in layers}
        out[name] = entry
    return out


# ============================================================================ ranking / curves


def lowest_active(scores: np.ndarray, gates: ChannelGates, k: int,
                  active: np.ndarray | None = None) -> np.ndarray:
    """Flat indices of the ``k`` lowest-scoring active channels, ranked globally.

    No per-layer normalisation. A gate's last active channel is never chosen (a layer is never
    removed entirely). NaN scores rank last (never chosen before finite ones).
    """
    act = gates.active() if active is None else np.asarray(active, dtype=bool).copy()
    s = np.where(np.isfinite(scores), scores, np.inf).astype(float)
    order = np.argsort(s, kind="stable")
    left = np.array([act[lo:hi].sum() for lo, hi in zip(gates.offsets[:-1], gates.offsets[1:], strict=True)])
    li = gates.layer_index()
    chosen = []
    for f in order:
        if len(chosen) >= k:
            break
        if not act[f] or left[li[f]] <= 1:
            continue
        chosen.append(int(f))
        act[f] = False
        left[li[f]] -= 1
    return np.asarray(chosen, dtype=int)


@torch.no_grad()
def loss_vs_removed(model: nn.Module, gates: ChannelGates, scores: np.ndarray,
                    x: torch.Tensor, y: torch.Tensor, counts: Sequence[int], *,
                    loss_fn: LossFn | None = None, batch_size: int = 1024) -> np.ndarray:
    """Loss after zeroing the ``k`` lowest-scoring channels, for each ``k`` in ``counts``.

    No fine-tuning: the ranking is fixed by ``scores`` (computed once). Eval mode. The gates
    are restored afterwards.

    Returns:
        Array of losses, one per count (the mean loss over ``x``).
    """
    loss_fn = loss_fn or cross_entropy_loss
    saved = gates.values()
    was_training = model.training
    model.eval()
    order = lowest_active(scores, gates, int(max(counts)))
    out = []
    device = gates.gates[0].z.device
    try:
        for k in counts:
            gates.set_values(saved)
            gates.zero_channels(order[: int(k)])
            tot = 0.0
            for i in range(0, len(y), batch_size):
                xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
                tot += float(loss_fn(model, xb, yb)) * len(yb)
            out.append(tot / len(y))
    finally:
        gates.set_values(saved)
        model.train(was_training)
    return np.asarray(out)


def curve_gap(curve: np.ndarray, reference: np.ndarray, counts: Sequence[int]) -> float:
    """Area between two loss curves over ``counts`` (trapezoid of ``|curve - reference|``),
    divided by the count range: the mean vertical gap."""
    c = np.asarray(counts, dtype=float)
    d = np.abs(np.asarray(curve, float) - np.asarray(reference, float))
    if c.size < 2 or c[-1] == c[0]:
        return float(d.mean())
    return float(np.trapezoid(d, c) / (c[-1] - c[0]))


# ============================================================================ iterative pruning


@dataclass(frozen=True)
class PruneConfig:
    """Iterative pruning schedule (paper: ``frequency=30``, ``neurons_per_step=100``).

    Args:
        criterion: one of ``taylor_fo``, ``taylor_fo_weight``, ``weight_magnitude``,
            ``bn_scale``, ``random`` (cheap criteria only; ``taylor_so`` and the oracle cost one
            pass per channel).
        frequency: minibatches between pruning steps (default 30).
        neurons_per_step: channels zeroed per step (default 100).
        momentum: smoothing of the averaged scores across steps (default 0.9).
        snapshot_fractions: fractions of all gated channels removed at which the model and
            mask are saved; pruning stops at the largest (default ``(0.25, 0.5)``).
        batch_size, lr, optimizer, weight_decay: training while pruning (Adam or SGD).
    """

    criterion: str = "taylor_fo"
    frequency: int = 30
    neurons_per_step: int = 100
    momentum: float = 0.9
    snapshot_fractions: tuple[float, ...] = (0.25, 0.5)
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_criterion(self.criterion, _CHEAP)
        if self.frequency < 1 or self.neurons_per_step < 1:
            raise ValueError("frequency and neurons_per_step must be >= 1")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        fr = tuple(float(f) for f in self.snapshot_fractions)
        if not fr or any(not 0 < f < 1 for f in fr) or list(fr) != sorted(fr):
            raise ValueError("snapshot_fractions must be increasing fractions in (0, 1)")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        object.__setattr__(self, "snapshot_fractions", fr)


class TaylorPruner:
    """Accumulates a criterion over training minibatches and prunes every ``frequency`` steps.

    Use inside any training loop, right after ``loss.backward()``::

        pruner = TaylorPruner(gates, PruneConfig(criterion="taylor_fo"))
        for x, y in batches:
            opt.zero_grad(); loss = loss_fn(model, x, y); loss.backward()
            pruner.step()          # reads dL/dz, accumulates, prunes when due
            opt.step()

    Args:
        gates: the model's :class:`ChannelGates`.
        config: a :class:`PruneConfig`.
        seed: seeds the ``random`` criterion.
    """

    def __init__(self, gates: ChannelGates, config: PruneConfig, *, seed: int = 0) -> None:
        self.gates = gates
        self.config = config
        self.gen = torch.Generator().manual_seed(int(seed))
        self._sum: torch.Tensor | None = None
        self._n = 0
        self.averaged: torch.Tensor | None = None
        self.steps_done = 0
        self.minibatches = 0

    def accumulate(self) -> None:
        """Add this minibatch's scores (after ``loss.backward()``); cheap (no extra passes)."""
        s = minibatch_scores(self.gates, [self.config.criterion], generator=self.gen)
        v = s[self.config.criterion]
        self._sum = v if self._sum is None else self._sum + v
        self._n += 1
        self.gates.zero_grad()

    def prune_now(self, k: int | None = None) -> np.ndarray:
        """Average the accumulated scores, smooth with momentum, zero the ``k`` lowest."""
        if self._n == 0:
            raise ValueError("no minibatch accumulated since the last pruning step")
        contribution = self._sum / self._n
        m = self.config.momentum
        if self.averaged is None or m == 0:
            self.averaged = contribution
        else:
            self.averaged = m * self.averaged + (1 - m) * contribution
        self._sum, self._n = None, 0
        k = self.config.neurons_per_step if k is None else int(k)
        chosen = lowest_active(self.averaged.numpy(), self.gates, k)
        self.gates.zero_channels(chosen)
        self.steps_done += 1
        return chosen

    def step(self) -> np.ndarray | None:
        """Accumulate; prune when ``frequency`` minibatches have been seen. Returns the pruned
        flat indices, or None when no pruning happened."""
        self.accumulate()
        self.minibatches += 1
        if self._n >= self.config.frequency:
            return self.prune_now()
        return None


def _cache_path(key: str) -> Path:
    from ..core import paths
    return paths.CACHE_DIR / "pruning" / f"{key}.pt"


def _pruning_optimizer(model: nn.Module, config: PruneConfig) -> torch.optim.Optimizer:
    """The optimizer of the training while pruning (and of its dense control)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True,
                           weight_decay=config.weight_decay)


def _pruning_minibatches(split: Any, batch_size: int, seed: int,
                         device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The endless minibatch stream of :func:`prune_iteratively` (a fresh permutation of the
    training split per epoch, seeded by ``seed``; a split smaller than a minibatch is one
    minibatch), shared with :func:`train_like_pruning` so both see the same data in order."""
    gen = torch.Generator().manual_seed(int(seed))
    n = len(split.y)
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = order[start:start + batch_size]
            yield split.x[idx].to(device), split.y[idx].to(device)


def train_like_pruning(model: nn.Module, split: Any, config: PruneConfig, n_minibatches: int, *,
                       seed: int = 0, device: str | torch.device = "cpu",
                       loss_fn: LossFn | None = None) -> nn.Module:
    """The dense control of a pruning run: ``n_minibatches`` steps of exactly the training that
    :func:`prune_iteratively` does between its pruning steps (same optimizer, learning rate,
    minibatch size, data order and torch seed), with no channel removed.

    A pruned-and-fine-tuned model has had this extra training; comparing it with the dense
    model as it was before pruning credits pruning with the gain of the extra steps. Give
    ``n_minibatches`` = a snapshot's ``"minibatches"`` and fine-tune both on the same schedule.
    The model is trained in place (train mode, ends in eval mode) and returned.
    """
    from ..core.runtime import select_device

    if n_minibatches < 0:
        raise ValueError(f"n_minibatches must be >= 0, got {n_minibatches}")
    device = select_device(device)
    split = split.train if hasattr(split, "train") else split
    loss_fn = loss_fn or cross_entropy_loss
    model.to(device).train()
    opt = _pruning_optimizer(model, config)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        stream = _pruning_minibatches(split, config.batch_size, seed, device)
        for _ in range(int(n_minibatches)):
            x, y = next(stream)
            opt.zero_grad(set_to_none=True)
            loss_fn(model, x, y).backward()
            opt.step()
    model.eval()
    return model


def prune_iteratively(model: nn.Module, gates: ChannelGates, split: Any, config: PruneConfig, *,
                      seed: int = 0, device: str | torch.device = "cpu",
                      loss_fn: LossFn | None = None, cache: bool = True,
                      progress: bool = True) -> list[dict[str, Any]]:
    """Train while pruning until ``max(config.snapshot_fractions)`` of the channels are off.

    The model trains in train mode with the gates on (pruned channels stay at 0); every
    ``config.frequency`` minibatches a :class:`TaylorPruner` step zeroes the lowest-ranked
    channels. The last step before a snapshot fraction prunes only up to it, so each snapshot
    has exactly ``round(fraction * n_channels)`` channels off.

    Args:
        model, gates: the gated model (changed in place: it ends at the last snapshot).
        split: a ``studylib.data.Split`` (or bundle; its ``train`` split is used).
        config: a :class:`PruneConfig`.
        seed: minibatch order and ``random`` scores.
        device: where to train.
        loss_fn: default mean cross-entropy.
        cache: reuse a saved result (keyed on model config and weights, data, config, seed).
        progress: show a progress bar over pruning steps.

    Returns:
        One dict per snapshot: ``fraction``, ``removed`` (count), ``gate_values`` (flat array),
        ``state_dict`` (CPU tensors), ``minibatches`` (trained so far).
    """
    from ..core.cache import discard_entry, load_entry, save_entry
    from ..core.runtime import progress as progress_bar
    from ..core.runtime import select_device
    from ..training import TrainConfig, checkpoint_key

    device = select_device(device)
    split = split.train if hasattr(split, "train") else split
    loss_fn = loss_fn or cross_entropy_loss
    ident = TrainConfig(epochs=0, batch_size=config.batch_size, lr=config.lr,
                        optimizer=config.optimizer, weight_decay=config.weight_decay)
    key = checkpoint_key(model, split, ident, seed,
                         f"taylor_prune({json.dumps(asdict(config), sort_keys=True)},"
                         f"mask={gates.mask_digest()},gates={[g.name for g in gates.gates]})")
    path = _cache_path(key)
    blob = load_entry(path, what="pruning run", check=lambda b: "snapshots" in b) if cache \
        else None
    if blob is not None:
        snaps = blob["snapshots"]
        try:
            model.load_state_dict(snaps[-1]["state_dict"])
            gates.set_values(snaps[-1]["gate_values"])
        except Exception as exc:  # a run of another model or gate layout: prune again
            discard_entry(path, f"{type(exc).__name__}: {exc}", what="pruning run")
        else:
            return [{**s, "gate_values": np.asarray(s["gate_values"])} for s in snaps]

    model.to(device).train()
    opt = _pruning_optimizer(model, config)
    pruner = TaylorPruner(gates, config, seed=seed)
    n_total = gates.n_channels
    targets = [int(round(f * n_total)) for f in config.snapshot_fractions]
    snapshots: list[dict[str, Any]] = []
    steps_needed = -(-targets[-1] // config.neurons_per_step) + len(targets)
    bar = progress_bar(total=steps_needed, desc=f"prune {config.criterion}") if progress else None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        for seen, (x, y) in enumerate(_pruning_minibatches(split, config.batch_size, seed,
                                                           device), start=1):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            loss.backward()
            pruner.accumulate()
            opt.step()
            if pruner._n < config.frequency:
                continue
            removed = n_total - int(gates.active().sum())
            target = targets[len(snapshots)]
            pruner.prune_now(min(config.neurons_per_step, target - removed))
            if bar is not None:
                bar.update(1)
            removed = n_total - int(gates.active().sum())
            if removed >= target:
                snapshots.append({
                    "fraction": config.snapshot_fractions[len(snapshots)],
                    "removed": removed, "minibatches": seen,
                    "gate_values": gates.values().numpy().copy(),
                    "state_dict": {k: v.detach().cpu().clone()
                                   for k, v in model.state_dict().items()}})
                if len(snapshots) == len(targets):
                    break
    if bar is not None:
        bar.close()
    model.eval()
    gates.zero_grad()
    if cache:
        save_entry(path, {"snapshots": [{**s, "gate_values": torch.as_tensor(s["gate_values"])}
                                        for s in snapshots]}, what="pruning run")
    return snapshots


# ============================================================================ cost and speed


def count_flops_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """``(flops, params)`` from ``torch_pruning.utils.count_ops_and_params`` (MACs as FLOPs,
    torch-pruning's convention)."""
    import contextlib
    import io

    import torch_pruning as tp

    with contextlib.redirect_stdout(io.StringIO()):  # the counter prints warnings on reuse
        flops, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(flops), int(params)


@torch.no_grad()
def compare_inference_time(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, *,
                           repeats: int = 25, warmup: int = 3) -> dict[str, float]:
    """Median CPU (or current device) forward time of two models on the same input.

    The two are timed alternately (a, b, a, b, ...) so drifts in machine load hit both.

    Args:
        model_a, model_b: e.g. the dense model and the physically pruned one (eval mode).
        x: the input batch.
        repeats: timed repetitions of each (>= 20 for the study; default 25).
        warmup: untimed repetitions first (default 3).

    Returns:
        ``{"median_a_s", "median_b_s", "ratio_b_over_a", "repeats"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    model_a.eval()
    model_b.eval()
    for _ in range(warmup):
        model_a(x)
        model_b(x)
    ta, tb = [], []
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(repeats):
        for m, acc in ((model_a, ta), (model_b, tb)):
            sync()
            t0 = time.perf_counter()
            m(x)
            sync()
            acc.append(time.perf_counter() - t0)
    ma, mb = float(np.median(ta)), float(np.median(tb))
    return {"median_a_s": ma, "median_b_s": mb, "ratio_b_over_a": mb / ma, "repeats": repeats}


# ============================================================================ torch-pruning


def torch_pruning_taylor_scores(model: nn.Module, gates: ChannelGates,
                                batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                                loss_fn: LossFn | None = None,
                                multivariable: bool = False) -> np.ndarray:
    """torch-pruning's own ``TaylorImportance`` per gated channel, averaged over minibatches.

    For each minibatch the weight gradients are computed (eval mode) and
    ``tp.importance.TaylorImportance(normalizer=None)`` scores the dependency group of each gate
    (``|w g|`` summed per layer, averaged over the group's layers; ``multivariable=True`` uses
    ``|sum w g|`` instead).

    Returns:
        Flat float64 array aligned with ``gates`` (same order as our scores).
    """
    import torch_pruning as tp

    loss_fn = loss_fn or cross_entropy_loss
    imp = tp.importance.TaylorImportance(normalizer=None, multivariable=multivariable)
    was_training = model.training
    model.eval()
    with gates.suspended():
        dg = tp.DependencyGraph().build_dependency(
            model, example_inputs=gates.example_inputs.to(next(model.parameters()).device),
            verbose=False)
    total = np.zeros(gates.n_channels)
    n = 0
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model, x, y).backward()
            parts = []
            for g in gates.gates:
                root = g.producers[0]
                fn = dg.get_pruner_of_module(root).prune_out_channels
                group = dg.get_pruning_group(root, fn, list(range(g.channels)))
                parts.append(imp(group).detach().cpu().double().numpy())
            total += np.concatenate(parts)
            n += 1
    finally:
        model.zero_grad(set_to_none=True)
        gates.zero_grad()
        model.train(was_training)
    if n == 0:
        raise ValueError("batches is empty")
    return total / n
