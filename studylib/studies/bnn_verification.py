"""Study 05 (Cardelli, Kwiatkowska, Laurenti, Paoletti, Patane, Wicker, IJCAI 2019): the
study layer.

``run`` fits the posteriors (HMC, VI, MC dropout), estimates the probability ``p`` that an
adversarial point exists in an L-inf box around each test point (FGSM and PGD: lower bounds;
IBP: an upper bound) with the Chernoff and the sequential Massart estimators, runs the coverage
experiment, and returns typed :class:`Records`. The methods live in
:mod:`studylib.techniques.verification`; this module holds what is particular to the study.

Three claims, each able to come out either way on measured data:

- :func:`claim_robustness_decreases_with_epsilon`: the PGD estimate rises from the smallest to
  the largest eps of the grid (paired by seed), wherever it is not at 0 or 1 throughout;
- :func:`claim_sequential_saves_samples`: on the study's own networks, the sequential scheme
  stops before Chernoff's ``N`` (a log-scale ratio over seeds), in the cells whose outcomes are
  not all 0 or all 1;
- :func:`claim_hmc_more_robust_than_approximations`: at the middle eps, the HMC posterior's
  PGD estimate lies below VI's and MC dropout's (paired differences by seed, Bonferroni for
  the number of comparisons).

What used to be claimed but holds by construction is checked by :func:`check_sanity`, which
raises :class:`SanityCheckFailed` inside ``run``: attack estimates never exceed the IBP
estimate of the same networks (IBP soundness), the IBP estimate never falls as eps grows
(intervals of nested boxes are nested), and the coverage experiment's failure rate is not
significantly above ``conf`` (the Chernoff-Hoeffding and Massart guarantees hold exactly for
the resampled i.i.d. draws, so only a bug can break them).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.runtime import StudyContext, seed_everything
from ..core.settings import StudySettings
from ..stats import (
    Claim,
    Interval,
    Rule,
    at_floor_or_ceiling,
    claim_over_conditions,
    clopper_pearson_interval,
    decide_condition,
    log_ratio_interval,
    paired_difference,
)
from ..techniques.verification import (
    OUTCOME_METHODS,
    chernoff_sample_size,
    outcome_pool,
    posterior_networks,
    resampled_coverage,
    robustness_grid,
)

OUTCOME = "pgd"  # the outcome the claims read: the strongest attack, a lower bound on p
REFERENCE = "hmc"  # the reference posterior of the method comparison
APPROXIMATIONS = ("vi", "mc_dropout")
CONTROL_P = (0.02, 0.5)  # the controlled i.i.d. Bernoulli pools of the coverage experiment


@dataclass(frozen=True)
class Settings(StudySettings):
    """The study's parameters, filled from the notebook's parameters cell (see there for what
    each means)."""

    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    signs_classes: tuple[int, ...]
    signs_n_train: int
    signs_n_test: int
    image_size: int
    signs_image_size: int
    mlp_hidden: tuple[int, ...]
    cnn_width: int
    cnn_hidden: int
    inference_methods: tuple[str, ...]
    hmc_datasets: tuple[str, ...]
    hmc_backend: str
    hmc_warmup: int
    hmc_leapfrog: int
    hmc_chains: int
    hmc_thin: int
    hmc_trajectory: float
    prior_scale: float
    vi_epochs: int
    dropout_p: float
    train_epochs: int
    err: float
    conf: float
    cp_alpha: float
    delta_out: dict[str, float]
    eps_grid: tuple[float, ...]
    n_points: int
    comparison_points: int
    coverage_points: int
    pgd_steps: int
    pgd_restarts: int
    coverage_repetitions: int
    pool_factor: int
    coverage_dataset: str
    sequential_max_ratio: float

    @property
    def n_chernoff(self) -> int:
        """Chernoff-Hoeffding sample size of the guarantee (err, conf)."""
        return chernoff_sample_size(self.err, self.conf)

    def delta(self, dataset: str) -> float:
        """The output threshold of ``dataset`` (the authors: 0.25 for MNIST, 0.75 for GTSRB)."""
        if dataset not in self.delta_out:
            raise ValueError(f"delta_out has no threshold for {dataset!r}; it has "
                             f"{sorted(self.delta_out)}")
        return float(self.delta_out[dataset])

    @property
    def mid_eps(self) -> float:
        """The pre-registered eps of the method comparison: the middle of the grid."""
        return float(sorted(self.eps_grid)[len(self.eps_grid) // 2])


# ============================================================================ records


@dataclass(frozen=True)
class PosteriorFit:
    """One fitted posterior: data set, seed, inference method and how good it is."""

    dataset: str
    seed: int
    inference: str
    clean_accuracy: float  # posterior predictive of the first 200 networks on the test split
    networks: int
    hmc_accept_rate: float  # NaN for VI and MC dropout
    iid: bool  # whether the networks are independent draws (HMC chains: not)
    predictive_ess: float = math.nan  # MCMC: worst ESS of the predictive probability (8 inputs)
    predictive_rhat: float = math.nan  # MCMC: worst split R-hat of the same
    weight_rhat: float = math.nan  # MCMC: worst split R-hat over the weights
    energy_error: float = math.nan  # MCMC: mean |H(proposal) - H(start)| after warm-up

    def guarantee(self, n_chernoff: int) -> bool:
        """Whether the Chernoff bound applies to estimates from these networks: i.i.d. draws,
        or MCMC samples whose effective sample size of the predictive probability reaches
        ``n_chernoff`` (with split R-hat below 1.05)."""
        return self.iid or (self.predictive_ess >= n_chernoff and self.predictive_rhat < 1.05)


@dataclass(frozen=True)
class Cell:
    """One estimate of ``p``: a (data set, seed, posterior, test point, eps, outcome) cell.

    ``p_hat`` uses all ``n_chernoff`` networks; ``p_hat_seq`` the prefix of ``n_seq`` networks
    at which the sequential Massart rule stops."""

    dataset: str
    seed: int
    inference: str
    point: int
    eps: float
    outcome: str
    p_hat: float
    n_used: int
    p_hat_seq: float
    n_seq: int
    n_chernoff: int
    mean_divergence: float
    grid: bool = True  # False: a cell of the method comparison only (primary eps, PGD)

    @property
    def constant(self) -> bool:
        """Every one of the ``n_chernoff`` outcomes is 0, or every one is 1."""
        return self.p_hat in (0.0, 1.0)


@dataclass(frozen=True)
class CoverageRow:
    """The coverage experiment on one pool (a posterior's outcomes at one point and eps, or a
    controlled Bernoulli pool: ``point = -1``, ``eps = nan``) for one estimator."""

    seed: int
    pool: str  # "vi", "mc_dropout" or "bernoulli(0.02)", "bernoulli(0.5)"
    point: int
    eps: float
    method: str  # "chernoff" | "sequential" | "study" (the study's own estimate, one repetition)
    p_pool: float
    pool_size: int
    repetitions: int
    failures: int
    n_used_mean: float

    @property
    def failure_rate(self) -> float:
        return self.failures / self.repetitions


@dataclass(frozen=True)
class SanityChecks:
    """What holds by construction, checked on the run (``run`` raises when it does not).

    ``bracket_*``: attack p_hat <= IBP p_hat of the same cell; ``ibp_monotone_*``: IBP p_hat
    non-decreasing in eps; ``coverage``: per estimator, the failures pooled over every pool of
    the coverage experiment and their Clopper-Pearson interval. ``max_attack_eps_drop`` and
    ``max_fgsm_excess`` are diagnostics of the attacks (an attack may miss, so they are not
    asserted): the largest fall of an attack's p_hat from one eps to the next, and the largest
    excess of FGSM's p_hat over PGD's."""

    bracket_comparisons: int
    bracket_violations: int
    ibp_monotone_comparisons: int
    ibp_monotone_violations: int
    max_attack_eps_drop: float
    max_fgsm_excess: float
    mean_gap_ibp_minus_pgd: float
    coverage: dict[str, dict]  # method -> {"failures", "repetitions", "rate", "ci95"}


@dataclass(frozen=True)
class Records:
    """Everything ``run`` measured."""

    fits: tuple[PosteriorFit, ...]
    cells: tuple[Cell, ...]
    coverage: tuple[CoverageRow, ...]
    checks: SanityChecks
    n_chernoff: int


class SanityCheckFailed(AssertionError):
    """A property that holds by construction does not: a bug, not a finding."""


# ============================================================================ run


def _load(name: str, s: Settings):
    """The data bundle of ``name`` and the architecture the study uses on it."""
    from ..data import load

    if name in ("digits", "mnist"):
        kw = {"image_size": s.image_size} if name == "digits" else {}
        return load(name, **kw), "mlp"
    if name == "signs":
        return load("signs", n_train=s.signs_n_train, n_test=s.signs_n_test,
                    image_size=s.signs_image_size, classes=list(s.signs_classes), seed=0), "cnn"
    if name == "gtsrb":
        return load("gtsrb", classes=list(s.signs_classes), image_size=s.signs_image_size), "cnn"
    raise ValueError(f"unknown dataset {name!r}; expected digits, signs, mnist or gtsrb")


def _fit_kwargs(s: Settings, ctx: StudyContext) -> dict:
    """The posterior-fitting arguments of :func:`fit_posterior` the settings fix."""
    return dict(mlp_hidden=s.mlp_hidden, cnn_width=s.cnn_width, cnn_hidden=s.cnn_hidden,
                prior_scale=s.prior_scale, vi_epochs=s.vi_epochs, dropout_p=s.dropout_p,
                train_epochs=s.train_epochs, hmc_backend=s.hmc_backend,
                hmc_warmup=s.hmc_warmup, hmc_leapfrog=s.hmc_leapfrog, hmc_thin=s.hmc_thin,
                hmc_trajectory=s.hmc_trajectory, device=ctx.device, progress=False)


def _posterior(bundle, arch: str, inference: str, s: Settings, ctx: StudyContext, *,
               n_networks: int, seed: int, **kw):
    return posterior_networks(bundle, arch=arch, inference=inference, n_networks=n_networks,
                              seed=seed, hmc_chains=s.hmc_chains, **_fit_kwargs(s, ctx), **kw)


def run(settings: Settings, ctx: StudyContext) -> Records:
    """Fit, estimate, run the coverage experiment, check what holds by construction.

    Every posterior is fitted first and the grids run afterwards (the order of the notebook
    this replaces, so the numbers are the same). Records the metrics
    ``clean_accuracy_<dataset>_<inference>`` and the sanity diagnostics on ``ctx``.
    Raises :class:`SanityCheckFailed` when a property that holds by construction fails.
    """
    s = settings
    if torch.device(ctx.device).type == "cpu":
        torch.set_num_threads(1)  # tiny per-network ops: a second CPU thread costs more (measured)
    n_ch = s.n_chernoff
    bundles = {name: _load(name, s) for name in s.datasets}
    fits, networks = [], {}
    for name, (bundle, arch) in bundles.items():
        for seed in s.seeds:
            for inf in s.inference_methods:
                if inf == "hmc" and name not in s.hmc_datasets:
                    continue
                seed_everything(seed)
                nets, info = _posterior(bundle, arch, inf, s, ctx, n_networks=n_ch, seed=seed)
                networks[(name, seed, inf)] = nets
                fits.append(PosteriorFit(
                    name, seed, inf, float(info["clean_accuracy"]), len(nets),
                    float(info.get("hmc_accept_rate", math.nan)), bool(info["iid"]),
                    float(info.get("predictive_ess", math.nan)),
                    float(info.get("predictive_rhat", math.nan)),
                    float(info.get("hmc_weight_rhat", math.nan)),
                    float(info.get("hmc_energy_error_mean", math.nan))))
    cells = []
    for (name, seed, inf), nets in networks.items():
        test_x = bundles[name][0].test.x
        common = dict(err=s.err, conf=s.conf, alpha=s.cp_alpha, pgd_steps=s.pgd_steps,
                      pgd_restarts=s.pgd_restarts, seed=seed, progress=False)
        for r in robustness_grid(nets, test_x[: s.n_points], s.eps_grid, s.delta(name),
                                 **common):
            cells.append(Cell(dataset=name, seed=seed, inference=inf, **r))
        # the method comparison: PGD at the primary eps on comparison_points points in all
        # (the grid's first n_points included); the extra points get seeds of their own index
        extra = test_x[s.n_points: s.comparison_points]
        if len(extra):
            for r in robustness_grid(nets, extra, [s.mid_eps], s.delta(name),
                                     outcome_methods=(OUTCOME,), point_offset=s.n_points,
                                     **common):
                cells.append(Cell(dataset=name, seed=seed, inference=inf, grid=False, **r))
    coverage = _coverage_experiment(bundles, s, ctx)
    coverage += _study_estimate_coverage(cells, coverage, dataset=s.coverage_dataset, err=s.err)
    checks = check_sanity(cells, coverage, conf=s.conf)
    for (name, inf), group in itertools.groupby(
            sorted(fits, key=lambda f: (f.dataset, f.inference)),
            key=lambda f: (f.dataset, f.inference)):
        ctx.record_metric(f"clean_accuracy_{name}_{inf}",
                          float(np.mean([f.clean_accuracy for f in group])))
    ctx.record_metric("mean_gap_ibp_minus_pgd", checks.mean_gap_ibp_minus_pgd)
    ctx.record_metric("max_attack_eps_drop", checks.max_attack_eps_drop)
    for method, pooled in checks.coverage.items():
        ctx.record_metric(f"coverage_failure_rate_{method}", pooled["rate"])
    return Records(tuple(fits), tuple(cells), tuple(coverage), checks, n_ch)


def _coverage_experiment(bundles, s: Settings, ctx: StudyContext) -> list[CoverageRow]:
    """Per seed: a pool of ``pool_factor x N`` fresh i.i.d. networks of each i.i.d. posterior
    (VI, MC dropout; a draw seed disjoint from the estimation networks), every network's PGD
    outcome at each coverage point and eps, and ``coverage_repetitions`` estimates from draws
    with replacement; plus two controlled Bernoulli pools at p = 0.02 and 0.5.

    The pool is streamed: drawn and attacked in sets of :func:`pool_chunk_size` networks (about
    0.5 GiB of weights on a CPU, 4 GiB on a GPU), so its memory does not grow with
    ``pool_factor`` (the paper profile's 20 x 292 draws of the 407,050-weight MNIST MLP would
    hold 9.5 GB at once)."""
    from ..techniques.verification import fit_posterior, pool_chunk_size

    n_ch = s.n_chernoff
    bundle, arch = bundles.get(s.coverage_dataset) or _load(s.coverage_dataset, s)
    points = bundle.test.x[: s.coverage_points]
    delta = s.delta(s.coverage_dataset)
    rows = []

    def add(seed, pool_name, point, eps, pool, rep_seed):
        for method in ("chernoff", "sequential"):
            res = resampled_coverage(pool, err=s.err, conf=s.conf, method=method,
                                     alpha=s.cp_alpha, repetitions=s.coverage_repetitions,
                                     seed=rep_seed)
            rows.append(CoverageRow(seed, pool_name, point, eps, method, res["p_pool"],
                                    res["pool_size"], res["repetitions"], res["failures"],
                                    res["n_used_mean"]))

    for seed in s.seeds:
        for inf in [m for m in APPROXIMATIONS if m in s.inference_methods]:
            post = fit_posterior(bundle, arch=arch, inference=inf, seed=seed,
                                 **_fit_kwargs(s, ctx))
            pools: dict[tuple[int, float], list[np.ndarray]] = {}
            chunk = None
            for c, nets in enumerate(post.stream(s.pool_factor * n_ch, 10_000 + seed,
                                                 chunk=pool_chunk_size(
                                                     ctx.device, _n_params(bundle, arch, s)))):
                chunk = chunk or len(nets)
                for i in range(s.coverage_points):
                    for eps in s.eps_grid:
                        pools.setdefault((i, float(eps)), []).append(outcome_pool(
                            nets, points[i], eps, delta, method="pgd", chunk=len(nets),
                            steps=s.pgd_steps, restarts=s.pgd_restarts,
                            seed=seed * 1009 + c))
            for (i, eps), parts in pools.items():
                add(seed, inf, i, eps, np.concatenate(parts),
                    seed * 7919 + i * 31 + int(eps * 1e4))
        for p in CONTROL_P:
            rng = np.random.default_rng([seed, int(p * 1e4)])
            pool = (rng.random(s.pool_factor * n_ch) < p).astype(np.int8)
            add(seed, f"bernoulli({p:g})", -1, math.nan, pool, seed * 7919 + int(p * 1e4))
    return rows


def _n_params(bundle, arch: str, s: Settings) -> int:
    """Weights of the study's network on ``bundle`` (what one sampled network holds)."""
    from ..techniques import bayes

    c, h, _ = bundle.input_shape
    if arch == "mlp":
        net = bayes.bayesian_mlp(c * h * h, bundle.num_classes, hidden=tuple(s.mlp_hidden))
    else:
        net = bayes.bayesian_cnn(c, bundle.num_classes, h, width=s.cnn_width,
                                 hidden=s.cnn_hidden)
    return int(sum(int(np.prod(v)) for v in net.site_shapes.values()))


def _study_estimate_coverage(cells: Sequence[Cell], coverage: Sequence[CoverageRow], *,
                             dataset: str, err: float) -> list[CoverageRow]:
    """Coverage of the estimates the study reports: each i.i.d. posterior's Chernoff p_hat from
    its own N estimation networks (a PGD cell of the grid on ``dataset``) against the p of the
    large, disjoint pool of the same posterior, point and eps (the long reference run). One
    repetition per cell; pooled over the cells the miss fraction must stay within conf (the
    pool's p itself carries a little sampling error, so this check is conservative)."""
    ref = {(r.seed, r.pool, r.point, r.eps): r.p_pool for r in coverage
           if r.method == "chernoff" and r.point >= 0}
    rows = []
    for c in cells:
        key = (c.seed, c.inference, c.point, c.eps)
        if c.dataset == dataset and c.outcome == OUTCOME and c.grid and key in ref:
            miss = int(abs(c.p_hat - ref[key]) > err)
            rows.append(CoverageRow(c.seed, c.inference, c.point, c.eps, "study", ref[key],
                                    c.n_chernoff, 1, miss, float(c.n_used)))
    return rows


# ============================================================================ sanity checks


def _by(cells: Sequence[Cell], *keys: str) -> dict[tuple, list[Cell]]:
    out: dict[tuple, list[Cell]] = {}
    for c in cells:
        out.setdefault(tuple(getattr(c, k) for k in keys), []).append(c)
    return out


def check_sanity(cells: Sequence[Cell], coverage: Sequence[CoverageRow], *, conf: float,
                 tol: float = 1e-12) -> SanityChecks:
    """Check what holds by construction; raise :class:`SanityCheckFailed` when it does not.

    - **IBP brackets the attacks**: in every cell the FGSM and PGD estimates are <= the IBP
      estimate. The three use the same networks, and a network with a found adversarial point
      cannot be certified (IBP is sound; ``tests/test_verification.py`` proves it per network).
    - **IBP is monotone in eps**: the boxes of a larger eps contain those of a smaller one, and
      interval propagation maps nested boxes to nested bounds, so no IBP estimate falls.
    - **Coverage**: per estimator, the failures ``|p_hat - p_pool| > err`` pooled over every pool
      are not significantly above ``conf`` (Clopper-Pearson lower end <= conf). Draws with
      replacement from a pool are i.i.d. Bernoulli(p_pool), for which both guarantees hold
      exactly.

    The attacks' own monotonicity in eps is reported, not asserted: FGSM's single step can
    overshoot at a larger eps, and PGD's random starts differ between radii.
    """
    by_cell = _by(cells, "dataset", "seed", "inference", "point", "eps")
    comps, bad, gaps = 0, [], []
    for key, group in by_cell.items():
        p = {c.outcome: c.p_hat for c in group}
        if "ibp" not in p:
            continue
        for att in ("fgsm", "pgd"):
            if att in p:
                comps += 1
                if p[att] > p["ibp"] + tol:
                    bad.append((key, att, p[att], p["ibp"]))
        if "pgd" in p:
            gaps.append(p["ibp"] - p["pgd"])
    if bad:
        raise SanityCheckFailed(f"an attack estimate exceeds the IBP estimate of the same "
                                f"networks (IBP unsound?): {bad[:5]}")
    mono, ibp_bad, drops, excess = 0, [], [], []
    for key, group in _by(cells, "dataset", "seed", "inference", "point", "outcome").items():
        seq = sorted(group, key=lambda c: c.eps)
        for a, b in itertools.pairwise(seq):
            if key[-1] == "ibp":
                mono += 1
                if b.p_hat < a.p_hat - tol:
                    ibp_bad.append((key, a.eps, a.p_hat, b.eps, b.p_hat))
            else:
                drops.append(a.p_hat - b.p_hat)
    if ibp_bad:
        raise SanityCheckFailed(f"an IBP estimate falls as eps grows (nested boxes must give "
                                f"nested bounds): {ibp_bad[:5]}")
    for group in by_cell.values():
        p = {c.outcome: c.p_hat for c in group}
        if "fgsm" in p and "pgd" in p:
            excess.append(p["fgsm"] - p["pgd"])
    pooled = {}
    for method in sorted({r.method for r in coverage}):
        rows = [r for r in coverage if r.method == method]
        k, n = sum(r.failures for r in rows), sum(r.repetitions for r in rows)
        iv = clopper_pearson_interval(k, n)
        pooled[method] = {"failures": k, "repetitions": n, "rate": k / n, "ci95": list(iv.ci95)}
        if iv.lo > conf:
            raise SanityCheckFailed(f"{method}: {k} of {n} coverage repetitions miss by more "
                                    f"than err, significantly more than conf = {conf} "
                                    f"(Clopper-Pearson {iv.ci95})")
    return SanityChecks(comps, 0, mono, 0, max(drops, default=math.nan),
                        max(excess, default=math.nan),
                        float(np.mean(gaps)) if gaps else math.nan, pooled)


# ============================================================================ claims


def _order(cells: Sequence[Cell], key: str) -> list:
    return list(dict.fromkeys(getattr(c, key) for c in cells))


def _point_mean(cells: Sequence[Cell], dataset: str, inference: str, eps: float,
                outcome: str = OUTCOME) -> dict[int, float]:
    """Per seed: the mean over test points of ``outcome``'s p_hat at ``eps``."""
    out: dict[int, list[float]] = {}
    for c in cells:
        if (c.dataset, c.inference, c.outcome) == (dataset, inference, outcome) \
                and math.isclose(c.eps, eps):
            out.setdefault(c.seed, []).append(c.p_hat)
    return {seed: float(np.mean(v)) for seed, v in sorted(out.items())}


def _values_at(cells: Sequence[Cell], dataset: str, inferences: Sequence[str],
               eps_values: Sequence[float], outcome: str = OUTCOME) -> list[float]:
    return [c.p_hat for c in cells if c.dataset == dataset and c.inference in inferences
            and c.outcome == outcome and any(math.isclose(c.eps, e) for e in eps_values)]


def _floor_reason(values: Sequence[float], what: str) -> str | None:
    where = at_floor_or_ceiling(values)
    if where is None:
        return None
    return f"{where}: {what} {'0' if where == 'floor' else '1'} in every seed and test point"


def claim_robustness_decreases_with_epsilon(records: Records, settings: Settings) -> Claim:
    """A larger box holds more adversarial points: per (data set, posterior), the PGD estimate
    at the largest eps of the grid minus that at the smallest (mean over test points, paired
    by seed) is > 0. A condition whose estimates at both radii are all 0 (or all 1) says
    nothing about the dependence on eps and is left out.

    Monotonicity itself (no estimate falls as eps grows) holds by definition for shared
    networks; it is :func:`check_sanity`'s business, not a claim."""
    lo_eps, hi_eps = min(settings.eps_grid), max(settings.eps_grid)
    cells = [c for c in records.cells if c.grid]
    rule = Rule("greater", 0.0)
    decisions = []
    for ds in _order(cells, "dataset"):
        for inf in _order([c for c in cells if c.dataset == ds], "inference"):
            lo, hi = _point_mean(cells, ds, inf, lo_eps), _point_mean(cells, ds, inf, hi_eps)
            seeds = sorted(set(lo) & set(hi))
            if not seeds:
                continue
            reason = _floor_reason(_values_at(cells, ds, [inf], [lo_eps, hi_eps]),
                                   f"PGD p_hat at eps {lo_eps:g} and {hi_eps:g} is")
            decisions.append(decide_condition(
                f"{ds}/{inf}", paired_difference([hi[s] for s in seeds], [lo[s] for s in seeds],
                                                 bounds=(-1.0, 1.0)), rule, uninformative=reason))
    if not decisions:
        raise ValueError("no PGD cells at the smallest and largest eps")
    return claim_over_conditions(
        "robustness_decreases_with_epsilon",
        f"The PGD estimate of p rises from eps = {lo_eps:g} to eps = {hi_eps:g} (mean over "
        "test points, paired by seed) for every data set and posterior where it is not 0 or 1 "
        "throughout", decisions,
        details={"eps": [lo_eps, hi_eps], "outcome": OUTCOME})


def claim_sequential_saves_samples(records: Records, settings: Settings) -> Claim:
    """On the study's own networks, the sequential Massart scheme stops before Chernoff's
    ``N``: per data set, the per-seed mean of ``n_seq / N`` over the cells (every posterior,
    point, eps and outcome) whose ``N`` outcomes are not all 0 or all 1 has a log-scale
    interval over seeds below ``settings.sequential_max_ratio`` (0.5: the paper's "substantially
    fewer samples" read as at most half). Cells with constant outcomes stop at the closed-form
    point of a constant stream, a saving that holds by construction, so they are left out; a
    data set with no other cell is left out whole. The threshold is below 1 because the
    scheme never uses more than ``N``: against 1 the claim could only fail when it saved
    nothing at all in every seed."""
    rule = Rule("less", settings.sequential_max_ratio)
    decisions, counts = [], {}
    for ds in _order(records.cells, "dataset"):
        per_seed, n_cells = [], {}
        for seed in sorted({c.seed for c in records.cells if c.dataset == ds}):
            live = [c for c in records.cells if c.dataset == ds and c.seed == seed
                    and not c.constant]
            n_cells[seed] = len(live)
            if live:
                per_seed.append(float(np.mean([c.n_seq / c.n_chernoff for c in live])))
        counts[ds] = n_cells
        if per_seed:
            decisions.append(decide_condition(ds, log_ratio_interval(per_seed), rule))
        else:
            decisions.append(decide_condition(
                ds, Interval.undefined("no cell with mixed outcomes"), rule,
                uninformative="every cell's outcomes are all 0 or all 1 in every seed (the "
                              "stopping point of a constant stream is fixed in advance)"))
    return claim_over_conditions(
        "sequential_saves_samples",
        f"On the study's networks, the sequential Massart scheme stops with substantially fewer "
        f"samples than Chernoff's N = {records.n_chernoff} (mean ratio < "
        f"{settings.sequential_max_ratio:g} over the cells whose outcomes are not all 0 or all "
        "1)", decisions,
        details={"informative_cells_per_seed": counts, "n_chernoff": records.n_chernoff})


def claim_hmc_more_robust_than_approximations(records: Records, settings: Settings) -> Claim:
    """The reference posterior is the more robust one: at the middle eps of the grid
    (fixed before the run), per data set with HMC, the PGD estimate of VI minus that of HMC
    and of MC dropout minus that of HMC (means over test points, paired by seed) are > 0.
    Each interval is a Bonferroni interval for the number of comparisons; a pair whose
    estimates are all 0 (or all 1) is left out; without HMC there is nothing to compare."""
    eps = settings.mid_eps
    cells = records.cells
    pairs = [(ds, other) for ds in _order(cells, "dataset")
             for other in APPROXIMATIONS
             if {REFERENCE, other} <= {c.inference for c in cells if c.dataset == ds}]
    rule = Rule("greater", 0.0)
    if not pairs:
        decisions = [decide_condition(
            "hmc vs approximations", Interval.undefined("no data set with HMC and VI or MC "
                                                        "dropout"), rule,
            uninformative="HMC was not run beside VI or MC dropout on any data set")]
    else:
        level = 1 - 0.05 / len(pairs)
        decisions = []
        for ds, other in pairs:
            ref, alt = _point_mean(cells, ds, REFERENCE, eps), _point_mean(cells, ds, other, eps)
            seeds = sorted(set(ref) & set(alt))
            iv = paired_difference([alt[s] for s in seeds], [ref[s] for s in seeds], ci=level,
                                   bounds=(-1.0, 1.0))
            iv = dataclasses.replace(iv, method=f"{iv.method}, Bonferroni {100 * level:.4g}% "
                                                f"for {len(pairs)} comparisons")
            reason = _floor_reason(_values_at(cells, ds, [REFERENCE, other], [eps]),
                                   f"PGD p_hat of both at eps {eps:g} is")
            decisions.append(decide_condition(f"{ds}: {other} - {REFERENCE}", iv, rule,
                                              uninformative=reason))
    return claim_over_conditions(
        "hmc_more_robust_than_approximations",
        f"At eps = {eps:g}, the HMC posterior's PGD estimate of p is below that of VI and of "
        "MC dropout (approximation - HMC > 0, paired by seed, Bonferroni intervals)", decisions,
        details={"eps": eps, "outcome": OUTCOME,
                 "n_points": max(settings.n_points, settings.comparison_points),
                 "hmc_guarantee": {f"{f.dataset}/seed {f.seed}": f.guarantee(records.n_chernoff)
                                   for f in records.fits if f.inference == REFERENCE}})


# ============================================================================ tables, figures


def fit_table(records: Records):
    """Clean accuracy and HMC acceptance rate per data set and posterior (mean over seeds)."""
    import pandas as pd

    df = pd.DataFrame([{**dataclasses.asdict(f), "guarantee": f.guarantee(records.n_chernoff)}
                       for f in records.fits])
    cols = ["clean_accuracy", "hmc_accept_rate", "predictive_ess", "predictive_rhat",
            "weight_rhat", "energy_error"]
    out = df.groupby(["dataset", "inference"])[cols].mean()
    out["guarantee"] = df.groupby(["dataset", "inference"])["guarantee"].all().map(
        {True: f"N = {records.n_chernoff}", False: "no guarantee"})
    return out


def estimate_table(records: Records):
    """p_hat per data set, posterior, eps and outcome (mean over the grid's test points and
    seeds)."""
    import pandas as pd

    df = pd.DataFrame([dataclasses.asdict(c) for c in records.cells if c.grid])
    table = df.groupby(["dataset", "inference", "eps", "outcome"])["p_hat"].mean()
    return table.unstack("outcome")[[o for o in OUTCOME_METHODS if o in set(df.outcome)]]


def coverage_table(records: Records):
    """Failure rate, samples used and p of every pool of the coverage experiment."""
    import pandas as pd

    df = pd.DataFrame([{**dataclasses.asdict(r), "failure_rate": r.failure_rate}
                       for r in records.coverage]).fillna({"eps": 0.0})
    return df.pivot_table(index=["pool", "point", "eps"], columns="method",
                          values=["p_pool", "failure_rate", "n_used_mean"])


def plot_robustness_bands(records: Records, dataset: str, *, title: str = "",
                          ax_size: float = 3.2):
    """p_hat vs eps per posterior on ``dataset``: the attack lower bounds (FGSM, PGD) and the
    IBP upper bound, the band between PGD and IBP shaded, means over test points and seeds
    (error bars: the range over seeds)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame([dataclasses.asdict(c) for c in records.cells
                       if c.dataset == dataset and c.grid])
    methods = list(dict.fromkeys(df["inference"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(ax_size * len(methods), ax_size),
                             sharey=True, squeeze=False)
    colors = {"fgsm": "tab:orange", "pgd": "tab:red", "ibp": "tab:blue"}
    for ax, meth in zip(axes[0], methods, strict=True):
        d = df[df["inference"] == meth]
        per_seed = d.groupby(["outcome", "eps", "seed"])["p_hat"].mean().reset_index()
        agg = per_seed.groupby(["outcome", "eps"])["p_hat"].agg(["mean", "min", "max"])
        if "pgd" in agg.index and "ibp" in agg.index:
            lo, hi = agg.loc["pgd"], agg.loc["ibp"]
            ax.fill_between(lo.index, lo["mean"], hi["mean"], color="0.85",
                            label="bracket (PGD..IBP)")
        for out in [o for o in OUTCOME_METHODS if o in agg.index]:
            a = agg.loc[out]
            ax.errorbar(a.index, a["mean"], yerr=[a["mean"] - a["min"], a["max"] - a["mean"]],
                        marker="o", ms=4, capsize=2, color=colors[out], label=out.upper())
        ax.set_xscale("log")
        eps_values = sorted(d["eps"].unique())
        ax.set_xticks(eps_values, [f"{e:g}" for e in eps_values])
        ax.minorticks_off()
        ax.set_title(meth)
        ax.set_xlabel("eps (L-inf)")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("p_hat (prob. of adversarial)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=len(labels), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_samples_and_coverage(records: Records, settings: Settings):
    """Left: samples the sequential scheme used against the pool's p (Chernoff's N as a
    line). Right: each estimator's failure rate against conf."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    seq = [r for r in records.coverage if r.method == "sequential"]
    for pool in dict.fromkeys(r.pool for r in seq):
        rows = [r for r in seq if r.pool == pool]
        axes[0].scatter([r.p_pool for r in rows], [r.n_used_mean for r in rows], s=14,
                        label=f"sequential: {pool}")
    axes[0].axhline(records.n_chernoff, color="k", lw=1, label=f"Chernoff N = {records.n_chernoff}")
    axes[0].set_xlabel("p (pool)")
    axes[0].set_ylabel("samples used (mean over repetitions)")
    axes[0].legend(fontsize=7)
    for method, marker in (("chernoff", "o"), ("sequential", "x")):
        rows = [r for r in records.coverage if r.method == method]
        axes[1].scatter([r.p_pool for r in rows], [r.failure_rate for r in rows], s=14,
                        marker=marker, label=method)
    axes[1].axhline(settings.conf, color="r", lw=1, ls="--", label=f"conf = {settings.conf:g}")
    axes[1].set_xlabel("p (pool)")
    axes[1].set_ylabel("fraction |p_hat - p| > err")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


CLAIMS = {
    "robustness_decreases_with_epsilon": claim_robustness_decreases_with_epsilon,
    "sequential_saves_samples": claim_sequential_saves_samples,
    "hmc_more_robust_than_approximations": claim_hmc_more_robust_than_approximations,
}
