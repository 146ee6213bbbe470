"""Bayesian neural networks (Pyro), MC dropout, and a common posterior-predictive interface.

What is here
------------
- :class:`BayesianNet`: a network whose trainable part (the *body*) has a Normal prior
  ``N(0, prior_scale^2)`` on every weight and bias (Pyro ``PyroModule`` + ``PyroSample``),
  optionally behind a frozen deterministic ``extractor``. Build one with
  :func:`bayesian_mlp`, :func:`bayesian_cnn` (every layer Bayesian) or :func:`bayesian_head`
  (a trained CNN's convolutional features, frozen, + a Bayesian fully connected head).
  Its Pyro model is :meth:`BayesianNet.model`.
- :func:`fit_vi`: mean-field variational inference (``AutoNormal`` guide, ``Trace_ELBO``,
  Adam), seeded, cached, with a progress bar; returns a :class:`VIPosterior`.
- :func:`fit_nuts`: Hamiltonian Monte Carlo with NUTS (``pyro.infer.MCMC``) for small
  networks; returns an :class:`MCMCPosterior`.
- :class:`MCDropoutPosterior`: a deterministic network with dropout kept on at test time;
  :func:`mc_dropout_samples` is its functional form.
- :class:`DeterministicClassifier`: an ordinary network behind the same interface (its
  "posterior" is a point mass), so evaluation code treats all models alike.

The common interface (:class:`StochasticClassifier`)
---------------------------------------------------
``sample_logits(x, n_samples, seed=0) -> (S, N, K)`` logits of ``S`` posterior samples,
computed in ONE batched forward over all samples (``torch.func.vmap`` of
``torch.func.functional_call`` for weight posteriors; a repeated batch for MC dropout);
``predictive_probs(x, n_samples, seed=0) -> (N, K)`` (the mean softmax);
``sample_forward(x, n_samples=1) -> (S, N, K)`` draws *fresh* samples at every call from the
classifier's own generator (re-seed it with ``reseed(seed)``): this is the ``forward_samples``
argument of :func:`studylib.attacks.eot_pgd`. Weight posteriors also have
``draw(n_samples, seed) -> {site: (S, *shape)}`` and ``forward_samples(x, samples)``.

Uncertainty and detection: :func:`predictive_entropy`, :func:`expected_entropy`,
:func:`mutual_information` (all from (S, N, K) probabilities), :func:`roc_auc`,
:func:`detection_auc` (ROC AUC of a score separating clean from attacked inputs, with a
stratified bootstrap CI).

Evaluation: :func:`predictive_accuracy`, :func:`uncertainty_scores`, :func:`craft_transfer`
(FGSM / PGD crafted on a deterministic source) and :func:`whitebox_attack` (PGD, or EOT-PGD
through a posterior's own samples).

Why the vectorised forward is written here: Pyro's ``Predictive(parallel=True)`` needs the
model to broadcast over a sample dimension, which ``nn.Conv2d``/``nn.Linear`` do not do; a
``vmap`` over a plain deterministic twin of the network (whose parameter names equal the
Pyro sample-site names) gives the same numbers in one batched call (tested against a loop over
``pyro.infer.Predictive``).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyro  # its tqdm.auto import warning is silenced in studylib/__init__.py
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_value
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn

from ..core import paths
from ..core.cache import load_entry, save_entry
from ..core.io import cache_key
from ..core.runtime import progress as progress_bar
from ..core.runtime import torch_threads
from ..stats.auc import roc_auc
from ..stats.intervals import percentile_interval

Samples = dict[str, torch.Tensor]
CACHE_VERSION = 1

__all__ = [
    "BayesianNet", "bayesian_mlp", "bayesian_cnn", "bayesian_head",
    "StochasticClassifier", "WeightPosterior", "VIPosterior", "MCMCPosterior",
    "MCDropoutPosterior", "DeterministicClassifier",
    "fit_vi", "fit_nuts", "log_joint", "mc_dropout_samples", "posterior_mean_network",
    "predictive_entropy", "expected_entropy", "mutual_information", "roc_auc", "detection_auc",
    "predictive_accuracy", "uncertainty_scores", "craft_transfer", "whitebox_attack",
]


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous().float()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _fork_rng(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


# ============================================================================ Bayesian networks


def auto_batch_size(n_samples: int, device: torch.device | str) -> int:
    """Examples per chunk when ``n_samples`` weight samples are evaluated together: about 1024
    sample-examples per chunk on a CPU (cache-sized activations), 65,536 on a GPU."""
    budget = 65_536 if torch.device(device).type == "cuda" else 1024
    return max(1, budget // max(1, int(n_samples)))


class BayesianNet:
    """A classifier ``body(extractor(x))`` with a Normal prior on every parameter of ``body``.

    Args:
        body: a deterministic ``nn.Module`` giving the architecture (and, through its current
            parameters, the initial means of the variational guide). It is deep-copied twice:
            a plain *template* used for vectorised forwards, and a ``PyroModule`` whose every
            parameter is replaced by ``PyroSample(Normal(0, prior_scale).expand(shape))``.
            The Pyro sample-site names are the body's ``named_parameters()`` names
            (e.g. ``"0.weight"`` for an ``nn.Sequential``).
        extractor: optional deterministic feature extractor applied first; it is deep-copied,
            frozen (``requires_grad=False``) and kept in eval mode. Gradients still flow to the
            *input* through it (attacks need that). Default None (every layer Bayesian).
        prior_scale: standard deviation of the Normal prior, > 0 (default 1.0).
        config: JSON-able description of the architecture (enters cache keys); default taken
            from ``body.config`` when it has one.

    The body must be free of batch norm (running statistics are not weights) and of active
    dropout (``p > 0``): a weight posterior with extra dropout noise is not what this class
    models (use :class:`MCDropoutPosterior` for that).

    Example:
        >>> bnet = bayesian_mlp(in_features=4, num_classes=3, hidden=(8,), prior_scale=1.0)
        >>> sorted(bnet.site_shapes)
        ['classifier.0.bias', 'classifier.0.weight', 'features.1.bias', 'features.1.weight']
    """

    def __init__(self, body: nn.Module, *, extractor: nn.Module | None = None,
                 prior_scale: float = 1.0, config: Mapping[str, Any] | None = None) -> None:
        prior_scale = float(prior_scale)
        if not prior_scale > 0:
            raise ValueError(f"prior_scale must be > 0, got {prior_scale}")
        for m in body.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                raise ValueError("body must not contain batch norm (its running statistics are "
                                 "not parameters a weight posterior can model)")
            if isinstance(m, nn.Dropout) and m.p > 0:
                raise ValueError("body must not contain dropout with p > 0 (use "
                                 "MCDropoutPosterior for MC dropout)")
        self.prior_scale = prior_scale
        self.template = copy.deepcopy(body).eval()
        for p in self.template.parameters():
            p.requires_grad_(False)
        self.site_shapes: dict[str, torch.Size] = {
            n: p.shape for n, p in self.template.named_parameters()}
        if not self.site_shapes:
            raise ValueError("body has no parameters to make Bayesian")
        self.extractor = None
        if extractor is not None:
            self.extractor = copy.deepcopy(extractor).eval()
            for p in self.extractor.parameters():
                p.requires_grad_(False)
        self.pyro_body = self._make_pyro_body(body)
        cfg = dict(config) if config is not None else dict(getattr(body, "config", None) or
                                                           {"repr": repr(body)})
        self.config: dict[str, Any] = {
            "body": cfg, "prior_scale": prior_scale,
            "extractor": None if self.extractor is None else
            _digest(*[t for _, t in sorted(self.extractor.state_dict().items())]),
            "init": _digest(*[p for _, p in sorted(self.template.named_parameters())]),
        }

    # -- construction
    @property
    def device(self) -> torch.device:
        return next(iter(self.template.parameters())).device

    def _prior(self, shape: torch.Size) -> Callable[[nn.Module], dist.Distribution]:
        def prior(_module: nn.Module) -> dist.Distribution:
            zero = torch.zeros((), device=self.device)
            return dist.Normal(zero, zero + self.prior_scale).expand(shape).to_event(len(shape))
        return prior

    def _make_pyro_body(self, body: nn.Module) -> PyroModule:
        pb = copy.deepcopy(body).eval()
        to_pyro_module_(pb)
        for module in list(pb.modules()):
            for p_name, p in list(module.named_parameters(recurse=False)):
                delattr(module, p_name)
                setattr(module, p_name, PyroSample(self._prior(p.shape)))
        return pb

    def to(self, device: str | torch.device) -> BayesianNet:
        """Move the template, the Pyro body and the extractor to ``device`` (in place)."""
        device = torch.device(device)
        self.template.to(device)
        self.pyro_body.to(device)
        if self.extractor is not None:
            self.extractor.to(device)
        return self

    # -- forwards
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The extractor's output (``x`` itself without an extractor)."""
        return x if self.extractor is None else self.extractor(x)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None,
              likelihood_scale: float = 1.0) -> torch.Tensor:
        """The Pyro model: weights ~ prior, ``y_i ~ Categorical(logits = body(extractor(x_i)))``.

        Args:
            x: inputs (N, ...).
            y: labels (N,) or None (then ``obs`` is sampled).
            likelihood_scale: multiplies the log-likelihood (``num_data / N`` for a minibatch of
                a data set of ``num_data`` examples, divided by a KL weight if one is used).

        Records the logits as the deterministic site ``"logits"`` and returns them.
        """
        return self.model_on_features(self.features(x), y, likelihood_scale)

    def model_on_features(self, h: torch.Tensor, y: torch.Tensor | None = None,
                          likelihood_scale: float = 1.0) -> torch.Tensor:
        """:meth:`model` given the extractor's output ``h`` (same sites, so the same guide):
        :func:`fit_vi` computes a frozen extractor's features once, not at every step."""
        logits = self.pyro_body(h)
        pyro.deterministic("logits", logits)
        with pyro.plate("data", h.shape[0]), pyro.poutine.scale(scale=float(likelihood_scale)):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits

    def forward_samples(self, x: torch.Tensor, samples: Mapping[str, torch.Tensor], *,
                        batch_size: int | str | None = "auto", chunk_size: int | None = None
                        ) -> torch.Tensor:
        """Logits (S, N, K) of the network under each of ``S`` weight samples, vectorised.

        Args:
            x: inputs (N, ...); gradients flow to ``x``.
            samples: ``{site name: (S, *shape)}`` for every site in :attr:`site_shapes`.
            batch_size: process ``x`` in chunks of this many examples; ``"auto"`` (default)
                is :func:`auto_batch_size` (on a CPU ``max(1, 1024 // S)``, so that one
                chunk's activations stay cache-sized: the batched convolution over all N at
                once was measured 2.5x slower than over 25-example chunks; on a GPU 64 times
                more, since there the launch overhead of small chunks dominates); None
                processes all N at once.
            chunk_size: ``vmap`` chunk over samples (default: all ``S`` at once).
        """
        missing = set(self.site_shapes) - set(samples)
        if missing:
            raise ValueError(f"samples lack sites {sorted(missing)}")
        params = {k: samples[k] for k in self.site_shapes}
        h = self.features(x)

        def one(p: dict[str, torch.Tensor], hb: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.template, p, (hb,))

        batched = torch.func.vmap(one, in_dims=(0, None), chunk_size=chunk_size)
        if batch_size == "auto":
            batch_size = auto_batch_size(next(iter(params.values())).shape[0], h.device)
        elif batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be 'auto', None or an int >= 1, got {batch_size!r}")
        if batch_size is None or batch_size >= h.shape[0]:
            return batched(params, h)
        return torch.cat([batched(params, h[i:i + batch_size])
                          for i in range(0, h.shape[0], batch_size)], dim=1)

    def prior_samples(self, n_samples: int, seed: int = 0) -> Samples:
        """``n_samples`` weight draws from the prior, ``{site: (S, *shape)}``."""
        gen = torch.Generator().manual_seed(int(seed))
        return {k: (torch.randn((n_samples, *s), generator=gen) * self.prior_scale).to(self.device)
                for k, s in self.site_shapes.items()}


def bayesian_mlp(in_features: int, num_classes: int, *, hidden: Sequence[int] = (32,),
                 prior_scale: float = 1.0, seed: int = 0) -> BayesianNet:
    """A fully Bayesian MLP (``studylib.models`` ``"mlp"``, no dropout).

    Args:
        in_features: flattened input size; num_classes: outputs;
        hidden: hidden widths (default ``(32,)``); prior_scale: prior std (default 1.0);
        seed: initialises the architecture's weights, which become the guide's initial means.
    """
    from ..models import build_model

    body = build_model("mlp", in_features=in_features, num_classes=num_classes,
                       hidden=tuple(hidden), dropout=0.0, seed=seed)
    return BayesianNet(body, prior_scale=prior_scale)


def bayesian_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, *,
                 width: int = 16, hidden: int = 64, prior_scale: float = 1.0,
                 seed: int = 0) -> BayesianNet:
    """A fully Bayesian ``studylib.models.SmallCNN`` (every conv and linear layer).

    Args: as :class:`studylib.models.SmallCNN` (no dropout, no batch norm), plus
        ``prior_scale`` (default 1.0) and ``seed`` (initial weights = the guide's initial means).
    """
    from ..models import build_model

    body = build_model("small_cnn", in_channels=in_channels, num_classes=num_classes,
                       image_size=image_size, width=width, hidden=hidden, dropout=0.0,
                       batchnorm=False, seed=seed)
    return BayesianNet(body, prior_scale=prior_scale)


def bayesian_head(net: nn.Module, *, prior_scale: float = 1.0, reinit_seed: int | None = 0
                  ) -> BayesianNet:
    """A trained network's ``.features`` (frozen) + a Bayesian copy of its ``.classifier``.

    Args:
        net: a network with ``.features`` and ``.classifier`` (``studylib.models`` CNNs).
        prior_scale: prior std of the head's weights (default 1.0).
        reinit_seed: re-initialise the head's weights with this seed before they become the
            guide's initial means, so the Bayesian head is learnt from scratch on the frozen
            features (default 0); None keeps the trained head's weights as the initial means.
    """
    if not (hasattr(net, "features") and hasattr(net, "classifier")):
        raise ValueError("net must have .features and .classifier")
    head = copy.deepcopy(net.classifier)
    for m in head.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    if reinit_seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(reinit_seed))
            for m in head.modules():
                if hasattr(m, "reset_parameters") and m is not head:
                    m.reset_parameters()
    cfg = {"head_of": getattr(net, "config", None) or type(net).__name__,
           "reinit_seed": reinit_seed}
    return BayesianNet(head, extractor=net.features, prior_scale=prior_scale, config=cfg)


# ============================================================================ the common interface


class StochasticClassifier:
    """Base class: a classifier whose logits are random (posterior samples).

    Subclasses implement :meth:`sample_logits`; everything else derives from it.
    """

    name: str = "stochastic"

    def __init__(self) -> None:
        self._gen = torch.Generator().manual_seed(0)

    def sample_logits(self, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
        """Logits (S, N, K) of ``n_samples`` posterior samples (the same ``seed``, the same
        samples), in one vectorised forward."""
        raise NotImplementedError

    def reseed(self, seed: int) -> StochasticClassifier:
        """Reset the generator that :meth:`sample_forward` draws from."""
        self._gen = torch.Generator().manual_seed(int(seed))
        return self

    def sample_forward(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        """Logits (S, N, K) of ``n_samples`` FRESH posterior samples (new ones at every call).

        The ``forward_samples`` argument of :func:`studylib.attacks.eot_pgd`. Calls draw their
        seeds from the classifier's own generator (:meth:`reseed`), so a sequence of calls is
        reproducible.
        """
        seed = int(torch.randint(0, 2**62, (1,), generator=self._gen))
        return self.sample_logits(x, n_samples, seed=seed)

    def sample_probs(self, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
        """Softmax probabilities (S, N, K) of ``n_samples`` posterior samples."""
        return F.softmax(self.sample_logits(x, n_samples, seed=seed), dim=-1)

    def predictive_probs(self, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
        """Posterior predictive (N, K): the softmax averaged over ``n_samples`` samples."""
        return self.sample_probs(x, n_samples, seed=seed).mean(0)

    @torch.no_grad()
    def sample_probs_batched(self, x: torch.Tensor, n_samples: int, seed: int = 0,
                             batch_size: int = 256) -> torch.Tensor:
        """:meth:`sample_probs` in batches of examples, without gradients, on the CPU.

        Every batch uses the same ``seed`` (so the same weight samples, for weight
        posteriors)."""
        dev = self.device
        outs = [self.sample_probs(x[i:i + batch_size].to(dev), n_samples, seed=seed).cpu()
                for i in range(0, len(x), batch_size)]
        return torch.cat(outs, dim=1)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


class WeightPosterior(StochasticClassifier):
    """A posterior over the weights of a :class:`BayesianNet`; subclasses implement
    :meth:`draw`."""

    def __init__(self, bnet: BayesianNet) -> None:
        super().__init__()
        self.bnet = bnet

    @property
    def device(self) -> torch.device:
        return self.bnet.device

    def draw(self, n_samples: int, seed: int = 0) -> Samples:
        """``n_samples`` weight samples ``{site: (S, *shape)}``; same seed, same samples."""
        raise NotImplementedError

    def forward_samples(self, x: torch.Tensor, samples: Mapping[str, torch.Tensor],
                        **kwargs: Any) -> torch.Tensor:
        """Logits (S, N, K) under given weight samples (see
        :meth:`BayesianNet.forward_samples`)."""
        return self.bnet.forward_samples(x, samples, **kwargs)

    def sample_logits(self, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
        return self.bnet.forward_samples(x, self.draw(n_samples, seed))


class VIPosterior(WeightPosterior):
    """The mean-field Normal posterior found by :func:`fit_vi`.

    Args:
        bnet: the :class:`BayesianNet`.
        locs, scales: ``{site: tensor of the site's shape}``: the guide's means and standard
            deviations.
        history: per-epoch mean ELBO loss (per example), for plots.
    """

    name = "vi"

    def __init__(self, bnet: BayesianNet, locs: Mapping[str, torch.Tensor],
                 scales: Mapping[str, torch.Tensor], history: Sequence[float] = ()) -> None:
        super().__init__(bnet)
        for k, s in bnet.site_shapes.items():
            if k not in locs or k not in scales:
                raise ValueError(f"locs/scales lack site {k!r}")
            if tuple(locs[k].shape) != tuple(s) or tuple(scales[k].shape) != tuple(s):
                raise ValueError(f"site {k!r}: expected shape {tuple(s)}, got "
                                 f"{tuple(locs[k].shape)} / {tuple(scales[k].shape)}")
        dev = bnet.device
        self.locs = {k: locs[k].detach().to(dev) for k in bnet.site_shapes}
        self.scales = {k: scales[k].detach().to(dev) for k in bnet.site_shapes}
        self.history = list(history)
        self.from_cache = False
        self.converged: bool | None = None  # set by fit_vi with a convergence criterion

    def draw(self, n_samples: int, seed: int = 0) -> Samples:
        gen = torch.Generator().manual_seed(int(seed))
        out = {}
        for k, loc in self.locs.items():
            eps = torch.randn((n_samples, *loc.shape), generator=gen).to(loc.device)
            out[k] = loc + self.scales[k] * eps
        return out

    def mean_samples(self) -> Samples:
        """The posterior means as a single sample ``{site: (1, *shape)}``."""
        return {k: v[None] for k, v in self.locs.items()}


class MCMCPosterior(WeightPosterior):
    """Posterior samples from :func:`fit_nuts` (``{site: (M, *shape)}``).

    :meth:`draw` picks ``n_samples`` of the ``M`` stored samples uniformly at random without
    replacement (with replacement when ``n_samples > M``).
    """

    name = "nuts"

    def __init__(self, bnet: BayesianNet, samples: Mapping[str, torch.Tensor],
                 diagnostics: Mapping[str, Any] | None = None) -> None:
        super().__init__(bnet)
        self.samples = {k: samples[k].detach().to(bnet.device) for k in bnet.site_shapes}
        self.num_stored = int(next(iter(self.samples.values())).shape[0])
        self.diagnostics = dict(diagnostics or {})

    def draw(self, n_samples: int, seed: int = 0) -> Samples:
        gen = torch.Generator().manual_seed(int(seed))
        if n_samples <= self.num_stored:
            idx = torch.randperm(self.num_stored, generator=gen)[:n_samples]
        else:
            idx = torch.randint(0, self.num_stored, (n_samples,), generator=gen)
        return {k: v[idx.to(v.device)] for k, v in self.samples.items()}


class MCDropoutPosterior(StochasticClassifier):
    """MC dropout (Gal and Ghahramani 2016): a trained network with its dropout kept on.

    Args:
        net: a trained network containing ``nn.Dropout`` layers with ``p > 0``.
        split_features: when the network has ``.features`` (without dropout) and
            ``.classifier``, compute the features once and repeat only the classifier per
            sample (same numbers, cheaper). Default True.

    :meth:`sample_logits` repeats the batch ``S`` times and runs ONE forward with dropout in
    training mode (every other layer in eval mode), so each of the ``S`` copies gets its own
    dropout mask. Masks come from the global generator inside a forked, seeded RNG state.
    """

    name = "mc_dropout"

    def __init__(self, net: nn.Module, *, split_features: bool = True) -> None:
        super().__init__()
        drops = [m for m in net.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        if not drops:
            raise ValueError("net has no dropout layer with p > 0")
        self.net = net.eval()
        self._drops = drops
        feats = getattr(net, "features", None)
        self._split = bool(split_features and feats is not None and
                           hasattr(net, "classifier") and
                           not any(isinstance(m, nn.Dropout) for m in feats.modules()))

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.parameters())).device

    def sample_logits(self, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
        return mc_dropout_samples(self.net, x, n_samples, seed=seed, _split=self._split)


def mc_dropout_samples(net: nn.Module, x: torch.Tensor, n_samples: int, *, seed: int = 0,
                       _split: bool | None = None) -> torch.Tensor:
    """Logits (S, N, K) of ``net`` under ``n_samples`` dropout masks, in one batched forward.

    Args:
        net: a network with ``nn.Dropout`` layers; only they are put in training mode (batch
            norm etc. stay in eval mode); the network's modes are restored afterwards.
        x: inputs (N, ...); gradients flow to ``x``.
        n_samples: number of masks S (>= 1).
        seed: seeds the masks (same seed, same masks).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if _split is None:
        feats = getattr(net, "features", None)
        _split = bool(feats is not None and hasattr(net, "classifier") and
                      not any(isinstance(m, nn.Dropout) for m in feats.modules()))
    modes = {m: m.training for m in net.modules()}
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.train()
    dev = x.device
    try:
        with _fork_rng(dev):
            torch.manual_seed(int(seed))
            n = x.shape[0]
            if _split:
                h = net.features(x)
                hr = h.unsqueeze(0).expand(n_samples, *h.shape).reshape(n_samples * n, *h.shape[1:])
                out = net.classifier(hr)
            else:
                xr = x.unsqueeze(0).expand(n_samples, *x.shape).reshape(n_samples * n, *x.shape[1:])
                out = net(xr)
    finally:
        for m, t in modes.items():
            m.train(t)
    return out.reshape(n_samples, n, -1)


class DeterministicClassifier(StochasticClassifier):
    """An ordinary network behind the stochastic interface (every "sample" is the same)."""

    name = "deterministic"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval()

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.parameters())).device

    def sample_logits(self, x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
        out = self.net(x)
        return out.unsqueeze(0).expand(n_samples, *out.shape)


# ============================================================================ inference


def _vi_cache_key(bnet: BayesianNet, data_id: Any, settings: Mapping[str, Any], seed: int) -> str:
    blob = {"version": CACHE_VERSION, "kind": "vi", "bnet": bnet.config, "data": data_id,
            "settings": dict(settings), "seed": int(seed)}
    return cache_key(blob)


def _xy(data: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(x, y, identity) from a DataBundle (its train split), a Split, or an (x, y) tuple."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        return x, y, {"digest": _digest(x, y)}
    spec = getattr(data, "spec", None)
    split = data.train if hasattr(data, "train") else data
    if not (hasattr(split, "x") and hasattr(split, "y")):
        raise ValueError("data must be a DataBundle, a Split or an (x, y) tuple")
    ident = spec if spec is not None else {"digest": _digest(split.x, split.y)}
    return split.x, split.y, ident


def fit_vi(bnet: BayesianNet, data: Any, *, epochs: int = 20, batch_size: int = 128,
           lr: float = 1e-2, num_particles: int = 1, init_scale: float = 1e-2,
           kl_weight: float = 1.0, seed: int = 0, device: str | torch.device = "cpu",
           cache: bool = True, progress: bool = True, desc: str | None = None,
           cache_dir: str | Path | None = None, tol: float | None = None,
           window: int = 10, estimator: str = "svi") -> VIPosterior:
    """Mean-field variational inference: ``AutoNormal`` guide, ``Trace_ELBO``, Adam.

    The guide is ``q(w) = prod_i N(w_i; mu_i, sigma_i^2)``; ``mu`` starts at the body's current
    weights (``init_to_value``), ``sigma`` at ``init_scale``. Each step minimises the minibatch
    ELBO estimate ``-(n_data / B) * sum log p(y|x, w) / kl_weight + log q(w) - log p(w)`` with
    ``w ~ q`` (reparameterised) with ``pyro.infer.SVI`` and ``pyro.optim.Adam``. The fit runs in
    a private scope of Pyro's parameter store, so several models never share guide parameters
    and the caller's store is untouched.

    Args:
        bnet: the :class:`BayesianNet` (moved to ``device``).
        data: a ``DataBundle`` (train split), a ``Split``, or an ``(x, y)`` tuple.
        epochs: passes over the data (default 20). batch_size: minibatch (default 128).
        lr: Adam learning rate (default 1e-2). num_particles: ELBO samples per step (default 1).
        init_scale: initial guide std (default 1e-2).
        kl_weight: weight of the KL term relative to the likelihood (default 1.0 = the ELBO;
            < 1 is the "tempered"/"cold" posterior).
        seed: seeds minibatch order and ELBO samples; same seed, same posterior.
        device: where to train. cache: read/write the cache (``outputs/cache/checkpoints``).
        progress: show a bar over epochs. desc: its label.
        tol: a convergence criterion (default None: run all ``epochs``). With a ``tol``,
            ``epochs`` is the most epochs, and SVI stops after the first epoch at which the
            median loss per example of the last ``window`` epochs (default 10) lies less than
            ``tol * window`` below that of the ``window`` epochs before (a fall of less than
            ``tol`` per epoch). ``converged`` on the result says whether that happened.
        estimator: how the ELBO's gradient is estimated. ``"svi"`` (default): Pyro's SVI with
            one weight sample per minibatch (Blundell et al.'s Bayes by Backprop).
            ``"lrt"``: the local reparameterisation trick (Kingma, Salimans and Welling 2015),
            :class:`LocalReparameterisation`: each layer's pre-activations are sampled from
            the Normal the weight posterior induces on them, independently per example, and
            the KL term is the closed form; same guide family, same objective, lower-variance
            gradients. Both return the same :class:`VIPosterior` (weights sampled at test
            time).

    Returns:
        A :class:`VIPosterior` with ``history`` (per-epoch mean loss per example),
        ``from_cache`` and ``converged`` (None without ``tol``).
    """
    if epochs < 0 or batch_size < 1 or lr <= 0 or num_particles < 1:
        raise ValueError("epochs must be >= 0, batch_size >= 1, lr > 0, num_particles >= 1")
    if not kl_weight > 0:
        raise ValueError(f"kl_weight must be > 0, got {kl_weight}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be > 0, got {init_scale}")
    if tol is not None and (not tol > 0 or window < 1):
        raise ValueError(f"tol must be > 0 and window >= 1, got tol={tol}, window={window}")
    if estimator not in ("svi", "lrt"):
        raise ValueError(f"estimator must be 'svi' or 'lrt', got {estimator!r}")
    from ..core.runtime import select_device

    device = select_device(device)
    bnet.to(device)
    x_all, y_all, data_id = _xy(data)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                "num_particles": num_particles, "init_scale": init_scale,
                "kl_weight": kl_weight}
    if tol is not None:  # only then, so the keys of fits without a criterion stay as they were
        settings.update(tol=float(tol), window=int(window))
    if estimator != "svi":  # likewise: the SVI fits' keys are unchanged
        settings["estimator"] = estimator
    key = _vi_cache_key(bnet, data_id, settings, seed)
    path = (Path(cache_dir) if cache_dir else paths.CHECKPOINT_DIR) / f"vi-{key}.pt"
    ck = load_entry(path, what="VI posterior", map_location=device,
                    check=lambda ck: "locs" in ck and "scales" in ck) if cache else None
    if ck is not None:
        post = VIPosterior(bnet, ck["locs"], ck["scales"], ck.get("history", []))
        post.from_cache = True
        post.converged = ck.get("converged")
        return post

    n = len(y_all)
    init_values = {k: v.detach().clone() for k, v in bnet.template.named_parameters()}
    if bnet.extractor is not None:  # frozen: its features are computed once
        with torch.no_grad():
            x_all = torch.cat([bnet.features(x_all[i:i + 512].to(device)).cpu()
                               for i in range(0, n, 512)])
    history: list[float] = []
    # a private, empty parameter store for this fit: guides of several models never share
    # parameters through Pyro's global store, and the caller's store is left as it was
    with pyro.get_param_store().scope(), _fork_rng(device):
        torch.manual_seed(int(seed))
        if estimator == "svi":
            guide = AutoNormal(bnet.model_on_features,
                               init_loc_fn=init_to_value(values=init_values),
                               init_scale=float(init_scale))
            svi = SVI(bnet.model_on_features, guide, pyro.optim.Adam({"lr": lr}),
                      loss=Trace_ELBO(num_particles=num_particles))
        else:
            svi = LocalReparameterisation(bnet, init_values, init_scale=init_scale, lr=lr,
                                          num_particles=num_particles)
        gen = torch.Generator().manual_seed(int(seed))
        n_batches = max(1, math.ceil(n / batch_size))
        bar = progress_bar(range(epochs), desc=desc or "vi") if progress else range(epochs)
        for _ in bar:
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb = x_all[idx].to(device), y_all[idx].to(device)
                total += svi.step(xb, yb, n / (len(idx) * kl_weight))
            # each minibatch loss estimates the full-data negative ELBO: report it per example
            history.append(total / n_batches / max(n, 1))
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]:.3f}")
            if tol is not None and _loss_converged(history, tol, window):
                break
        if estimator == "lrt":
            locs, scales = svi.locs_scales()
        else:
            if epochs == 0:
                guide(x_all[:2].to(device), y_all[:2].to(device))  # builds its parameters
            with torch.no_grad():
                locs = {k: attrgetter(k)(guide.locs).detach().clone() for k in bnet.site_shapes}
                scales = {k: attrgetter(k)(guide.scales).detach().clone()
                          for k in bnet.site_shapes}
    post = VIPosterior(bnet, locs, scales, history)
    post.converged = None if tol is None else _loss_converged(history, tol, window)
    if cache:
        save_entry(path, {"locs": {k: v.cpu() for k, v in locs.items()},
                          "scales": {k: v.cpu() for k, v in scales.items()},
                          "history": history, "converged": post.converged},
                   what="VI posterior")
    return post


class LocalReparameterisation:
    """The ELBO of a mean-field Normal posterior, estimated with the local reparameterisation
    trick (Kingma, Salimans and Welling, NeurIPS 2015), for :func:`fit_vi` (``estimator="lrt"``).

    For a linear or convolutional layer with independent ``W_ij ~ N(mu_ij, sigma_ij^2)``, the
    pre-activation of an example is Normal with mean ``conv(h, mu) + mu_b`` and variance
    ``conv(h^2, sigma^2) + sigma_b^2``; sampling it, instead of one weight matrix per
    minibatch, gives each example its own weight draw at the cost of a second convolution. The
    KL term against the ``N(0, prior_scale^2)`` prior is the closed form. Pyro has no such
    estimator (its ``Trace_ELBO`` samples weights), hence this class; its guide is the same
    family as ``AutoNormal``'s (means, and scales through a softplus).

    The body must be a chain: its forward equals applying its leaf modules in the order they
    are registered (true of ``studylib.models``' ``SmallCNN``, ``MLP`` and a ``.classifier``
    head); checked on the first minibatch. Only ``nn.Linear`` and ``nn.Conv2d``
    may hold parameters.

    Args:
        bnet: the :class:`BayesianNet`. init_values: initial means per site.
        init_scale: initial standard deviation. lr: Adam's learning rate.
        num_particles: pre-activation samples per example and step (averaged).
    """

    def __init__(self, bnet: BayesianNet, init_values: Mapping[str, torch.Tensor], *,
                 init_scale: float, lr: float, num_particles: int = 1) -> None:
        self.bnet = bnet
        self.num_particles = int(num_particles)
        self.layers: list[tuple[nn.Module, str]] = [
            (m, name) for name, m in bnet.template.named_modules()
            if not list(m.children())]
        for m, name in self.layers:
            if list(m.parameters(recurse=False)) and not isinstance(m, (nn.Linear, nn.Conv2d)):
                raise ValueError(f"layer {name!r} ({type(m).__name__}) holds parameters; the "
                                 "local reparameterisation covers Linear and Conv2d only")
        dev = bnet.device
        rho0 = math.log(math.expm1(float(init_scale)))  # softplus(rho0) = init_scale
        self.loc = {k: init_values[k].detach().clone().to(dev).requires_grad_(True)
                    for k in bnet.site_shapes}
        self.rho = {k: torch.full_like(self.loc[k], rho0).requires_grad_(True)
                    for k in bnet.site_shapes}
        self.opt = torch.optim.Adam([*self.loc.values(), *self.rho.values()], lr=float(lr))
        self._checked = False

    def check_chain(self, h: torch.Tensor) -> None:
        """The chain of leaf layers at the weight means must reproduce the body's own forward
        on ``h`` (done on the first minibatch :meth:`step` sees)."""
        with torch.no_grad():
            with_means = copy.deepcopy(self.bnet.template)
            for name, p in with_means.named_parameters():
                p.copy_(self.loc[name])
            own, chain = with_means(h), self.forward(h, sample=False)
        if own.shape != chain.shape or not torch.allclose(own, chain, atol=1e-5, rtol=1e-4):
            raise ValueError("the body's forward is not the chain of its layers in registration "
                             "order; the local reparameterisation cannot follow it")
        self._checked = True

    def _scale(self, k: str) -> torch.Tensor:
        return F.softplus(self.rho[k])

    def forward(self, h: torch.Tensor, *, sample: bool = True) -> torch.Tensor:
        """Logits of ``h`` (the extractor's output), each pre-activation sampled from its
        local Normal (``sample``), or at the weight means (``sample=False``)."""
        for m, name in self.layers:
            if not isinstance(m, (nn.Linear, nn.Conv2d)):
                h = m(h)
                continue
            w, b = f"{name}.weight" if name else "weight", f"{name}.bias" if name else "bias"
            has_b = b in self.loc
            if isinstance(m, nn.Linear):
                def op(inp, weight, bias):
                    return F.linear(inp, weight, bias)
            else:
                def op(inp, weight, bias, m=m):
                    return F.conv2d(inp, weight, bias, m.stride, m.padding, m.dilation, m.groups)
            mean = op(h, self.loc[w], self.loc[b] if has_b else None)
            if sample:
                var = op(h * h, self._scale(w) ** 2, self._scale(b) ** 2 if has_b else None)
                mean = mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)
            h = mean
        return h

    def kl(self) -> torch.Tensor:
        """KL(q || prior), summed over every weight, in closed form."""
        s0 = self.bnet.prior_scale
        total = torch.zeros((), device=self.bnet.device)
        for k, mu in self.loc.items():
            sig = self._scale(k)
            total = total + (math.log(s0) - torch.log(sig)
                             + (sig ** 2 + mu ** 2) / (2 * s0 ** 2) - 0.5).sum()
        return total

    def step(self, h: torch.Tensor, y: torch.Tensor, likelihood_scale: float) -> float:
        """One Adam step on ``likelihood_scale * NLL(minibatch) + KL``; returns that loss (the
        same quantity ``SVI.step`` returns for ``Trace_ELBO``)."""
        if not self._checked:
            self.check_chain(h[:4])
        self.opt.zero_grad(set_to_none=True)
        nll = sum(F.cross_entropy(self.forward(h), y, reduction="sum")
                  for _ in range(self.num_particles)) / self.num_particles
        loss = likelihood_scale * nll + self.kl()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def locs_scales(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        with torch.no_grad():
            return ({k: v.detach().clone() for k, v in self.loc.items()},
                    {k: self._scale(k).detach().clone() for k in self.rho})


def _loss_converged(history: Sequence[float], tol: float, window: int) -> bool:
    """Whether the loss fell by less than ``tol`` per epoch between the last two windows of
    ``window`` epochs: ``(median(history[-2w:-w]) - median(history[-w:])) / w < tol``. Window
    medians, so that an SVI spike of an epoch or two neither stops nor prolongs the fit."""
    if len(history) < 2 * window:
        return False
    before = float(np.median(history[-2 * window:-window]))
    last = float(np.median(history[-window:]))
    return (before - last) / window < tol


def posterior_mean_network(post: VIPosterior) -> nn.Module:
    """The deterministic network whose weights are the guide's means (no sampling): the
    extractor (if any) followed by a copy of the body with ``post.locs`` as its parameters, in
    eval mode with gradients off for its weights (not for its input). Wrapped in a
    :class:`DeterministicClassifier` it separates "different weights" (the mean network) from
    "posterior averaging" (the predictive over samples)."""
    bnet = post.bnet
    body = copy.deepcopy(bnet.template)
    with torch.no_grad():
        for name, p in body.named_parameters():
            p.copy_(post.locs[name].to(p.device))
    net: nn.Module = body if bnet.extractor is None else nn.Sequential(
        copy.deepcopy(bnet.extractor), body)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def log_joint(bnet: BayesianNet, params: Mapping[str, torch.Tensor], x: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
    """``log p(w) + sum_i log p(y_i | x_i, w)`` for one weight setting ``params``.

    The same density as :meth:`BayesianNet.model` (tested against Pyro's trace), computed
    with ``torch.func.functional_call`` on the plain template: NUTS evaluates it thousands of
    times and Pyro's tracing would dominate the cost on small networks.
    """
    logits = torch.func.functional_call(bnet.template, dict(params), (bnet.features(x),))
    s = bnet.prior_scale
    n_w = sum(math.prod(shape) for shape in bnet.site_shapes.values())
    sq = sum((params[k] ** 2).sum() for k in bnet.site_shapes)
    log_prior = -0.5 * sq / s**2 - n_w * (math.log(s) + 0.5 * math.log(2 * math.pi))
    return log_prior - F.cross_entropy(logits, y, reduction="sum")


def _nuts_chain(potential: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
                init: Mapping[str, torch.Tensor], num_samples: int, warmup_steps: int,
                seed: int, target_accept_prob: float, max_tree_depth: int, progress: bool,
                device: torch.device, names: Sequence[str]) -> dict[str, torch.Tensor]:
    with _fork_rng(device):
        pyro.set_rng_seed(seed)
        kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept_prob,
                      max_tree_depth=max_tree_depth, jit_compile=False)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                    initial_params=dict(init), disable_progbar=not progress)
        mcmc.run()
    return {k: v.detach() for k, v in mcmc.get_samples().items() if k in names}


def fit_nuts(bnet: BayesianNet, x: torch.Tensor, y: torch.Tensor, *, num_samples: int = 200,
             warmup_steps: int = 200, seed: int = 0, num_chains: int = 1,
             target_accept_prob: float = 0.8, max_tree_depth: int = 8,
             progress: bool = True, num_threads: int | None = 1) -> MCMCPosterior:
    """Sample the exact posterior of a small :class:`BayesianNet` with NUTS (full batch).

    ``pyro.infer.NUTS`` runs on the potential ``-log_joint(bnet, w, x, y)`` (see
    :func:`log_joint`; the model's prior and likelihood without Pyro's tracing overhead).

    Args:
        bnet: the network (keep it small: NUTS costs many full-data gradient evaluations).
        x, y: the training data (N, ...), (N,).
        num_samples: kept samples per chain (default 200). warmup_steps: adaptation steps
            (default 200). num_chains: chains, run one after the other, chain ``c`` seeded
            ``seed + 1000 c`` (default 1).
        seed: seeds the chains; same seed, same samples.
        target_accept_prob: NUTS step-size adaptation target (default 0.8).
        max_tree_depth: NUTS tree depth cap (default 8).
        progress: Pyro's progress bar.
        num_threads: torch CPU threads while sampling (default 1, restored afterwards): the
            thousands of tiny sequential gradient evaluations are slower with several threads
            (measured 20x slower with 2 threads on a loaded 2-core machine); None leaves it.

    Chains start at the body's current weights. Returns an :class:`MCMCPosterior` with
    ``diagnostics``: per site, the mean over its entries of the split-chain ``r_hat`` and of
    the effective sample size (``pyro.ops.stats``), when ``num_samples >= 4``.
    """
    if num_samples < 1 or warmup_steps < 0 or num_chains < 1:
        raise ValueError("num_samples must be >= 1, warmup_steps >= 0, num_chains >= 1")
    device = bnet.device
    x, y = x.to(device), y.to(device)
    names = list(bnet.site_shapes)

    def potential(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -log_joint(bnet, params, x, y)

    init = {k: v.detach().clone() for k, v in bnet.template.named_parameters()}
    chains: list[dict[str, torch.Tensor]] = []
    with torch_threads(num_threads):
        for c in range(num_chains):
            chains.append(_nuts_chain(potential, init, num_samples, warmup_steps,
                                      int(seed) + 1000 * c, target_accept_prob,
                                      max_tree_depth, progress, device, names))
    stacked = {k: torch.stack([ch[k] for ch in chains]) for k in names}  # (C, M, *shape)
    samples = {k: v.reshape(-1, *bnet.site_shapes[k]) for k, v in stacked.items()}
    diag: dict[str, Any] = {}
    if num_samples >= 4:
        from pyro.ops.stats import effective_sample_size, split_gelman_rubin

        diag = {k: {"r_hat": float(split_gelman_rubin(v).float().nanmean()),
                    "n_eff": float(effective_sample_size(v).float().nanmean())}
                for k, v in stacked.items()}
    return MCMCPosterior(bnet, samples, diag)


# ============================================================================ uncertainty


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the posterior predictive ``mean_s p_s``: total uncertainty, (N,).

    Args:
        probs: softmax probabilities of S samples, (S, N, K).
    """
    if probs.dim() != 3:
        raise ValueError(f"probs must be (S, N, K), got shape {tuple(probs.shape)}")
    return _entropy(probs.mean(0))


def expected_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of each sample's entropy: the aleatoric part, (N,)."""
    if probs.dim() != 3:
        raise ValueError(f"probs must be (S, N, K), got shape {tuple(probs.shape)}")
    return _entropy(probs).mean(0)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    """Mutual information between label and weights (epistemic part), (N,), in nats:
    ``H[mean_s p_s] - mean_s H[p_s]`` (>= 0, 0 when all samples agree)."""
    return (predictive_entropy(probs) - expected_entropy(probs)).clamp_min(0.0)


def detection_auc(scores_clean: np.ndarray | Sequence[float],
                  scores_attacked: np.ndarray | Sequence[float], *, n_boot: int = 1000,
                  ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """ROC AUC of an uncertainty score flagging attacked inputs, with a bootstrap CI.

    Clean and attacked scores are resampled separately (stratified percentile bootstrap).

    Returns:
        ``{"auc": a, "ci95": [lo, hi], "n_clean": n0, "n_attacked": n1}``.
    """
    neg = np.asarray(scores_clean, dtype=float).ravel()
    pos = np.asarray(scores_attacked, dtype=float).ravel()
    auc = roc_auc(neg, pos)
    rng = np.random.default_rng(seed)
    boots = np.array([roc_auc(neg[rng.integers(0, neg.size, neg.size)],
                              pos[rng.integers(0, pos.size, pos.size)])
                      for _ in range(int(n_boot))])
    lo, hi = percentile_interval(boots, ci=ci) if n_boot > 1 else (math.nan, math.nan)
    return {"auc": auc, "ci95": [lo, hi], "n_clean": int(neg.size), "n_attacked": int(pos.size)}


# ============================================================================ evaluation
# Accuracy, uncertainty and attacks of any model behind the StochasticClassifier interface.
# Study 03's protocol (its five models, sweeps, claims and figures) is
# studylib.studies.bayesian_robustness.


def predictive_accuracy(clf: StochasticClassifier, x: torch.Tensor, y: torch.Tensor,
                        n_samples: int, *, seed: int = 0, batch_size: int = 256) -> float:
    """Accuracy of the posterior predictive (argmax of the mean softmax over ``n_samples``)."""
    probs = clf.sample_probs_batched(x, n_samples, seed=seed, batch_size=batch_size).mean(0)
    return float((probs.argmax(1) == y.cpu()).float().mean())


@torch.no_grad()
def uncertainty_scores(clf: StochasticClassifier, x: torch.Tensor, n_samples: int, *,
                       seed: int = 0, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per-example ``predictive_entropy`` and ``mutual_information`` (numpy, (N,))."""
    p = clf.sample_probs_batched(x, n_samples, seed=seed, batch_size=batch_size)
    return {"predictive_entropy": predictive_entropy(p).numpy(),
            "mutual_information": mutual_information(p).numpy()}


def craft_transfer(source: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float,
                   *, pgd_steps: int = 10, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """Adversarial examples crafted on the deterministic ``source`` network.

    Args:
        attack: ``"fgsm"`` or ``"pgd"`` (``studylib.attacks``, L-inf, random start, 1 restart).
        eps: L-inf radius; pgd_steps: PGD steps (default 10, step 2.5 eps / steps).
    """
    from .. import attacks

    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
    dev = next(iter(source.parameters())).device
    source.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        if attack == "fgsm":
            xa = attacks.fgsm(source, xb, yb, eps)
        else:
            xa = attacks.pgd(source, xb, yb, eps, steps=pgd_steps, seed=seed + i)
        out.append(xa.detach().cpu())
    return torch.cat(out)


def whitebox_attack(clf: StochasticClassifier, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                    steps: int = 10, eot_samples: int = 10, seed: int = 0,
                    batch_size: int = 256) -> torch.Tensor:
    """White-box L-inf attack on ``clf`` itself.

    A :class:`DeterministicClassifier` gets ``studylib.attacks.pgd`` (cross-entropy, random
    start); a stochastic one gets ``studylib.attacks.eot_pgd`` with the gradient of the
    expected cross-entropy averaged over ``eot_samples`` fresh posterior samples per step
    (``clf.sample_forward``, re-seeded with ``seed``).
    """
    from .. import attacks

    dev = clf.device
    out = []
    clf.reseed(seed)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        if isinstance(clf, DeterministicClassifier):
            xa = attacks.pgd(clf.net, xb, yb, eps, steps=steps, seed=seed + i)
        else:
            xa = attacks.eot_pgd(clf.sample_forward, xb, yb, eps, steps=steps,
                                 n_samples=eot_samples, seed=seed + i)
        out.append(xa.detach().cpu())
    return torch.cat(out)
