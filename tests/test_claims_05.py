"""Study 05's claims on hand-built records: each can come out reproduced, not reproduced and
inconclusive (tests/test_claims_registry.py requires the three); the checks that replaced the
claims that held by construction raise on the inputs that break them; and the study's
Settings are the notebook's parameters cell."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import notebook_parameters

from studylib.stats import Verdict
from studylib.studies import bnn_verification as S

NOT_SETTINGS = {"profile", "output_dir", "device"}  # the context's, not the protocol's
EPS = (0.02, 0.05, 0.1)
N = 738



def _parameters() -> dict:
    return notebook_parameters("05_bnn_verification")


def _settings(**changes) -> S.Settings:
    return dataclasses.replace(S.Settings.from_params(_parameters()), eps_grid=EPS, **changes)


def _cell(ds, inf, seed, eps, p, *, point=0, outcome="pgd", n_seq=None) -> S.Cell:
    return S.Cell(dataset=ds, seed=seed, inference=inf, point=point, eps=eps, outcome=outcome,
                  p_hat=p, n_used=N, p_hat_seq=p, n_seq=N if n_seq is None else n_seq,
                  n_chernoff=N, mean_divergence=0.1)


def _pgd(table) -> list[S.Cell]:
    """``{(dataset, inference): [per seed: [per eps of EPS: p_hat]]}`` -> PGD cells, two test
    points per seed with the same p_hat."""
    return [_cell(ds, inf, seed, eps, p, point=pt)
            for (ds, inf), seeds in table.items() for seed, row in enumerate(seeds)
            for eps, p in zip(EPS, row, strict=True) for pt in (0, 1)]


_CHECKS = S.SanityChecks(0, 0, 0, 0, math.nan, math.nan, math.nan, {})


def _records(cells) -> S.Records:
    return S.Records(fits=(), cells=tuple(cells), coverage=(), checks=_CHECKS, n_chernoff=N)


# ----------------------------------------------------------------------------- settings


def test_settings_are_the_parameters_cell():
    params = _parameters()
    settings = S.Settings.from_params(params)
    fields = {f.name for f in dataclasses.fields(S.Settings)}
    # a parameter renamed in the cell (or a field renamed here) fails one of the two
    assert fields == set(params) - NOT_SETTINGS
    assert settings.n_chernoff == 29 and settings.mid_eps == 0.05  # smoke: err = conf = 0.2
    assert isinstance(settings.eps_grid, tuple)
    with pytest.raises(KeyError, match="err"):
        S.Settings.from_params({k: v for k, v in params.items() if k != "err"})


# ----------------------------------------------------------------------------- eps


def test_robustness_decreases_with_epsilon_reproduced():
    c = S.claim_robustness_decreases_with_epsilon(_records(_pgd({
        ("digits", "hmc"): [[0.10, 0.4, 0.80], [0.20, 0.5, 0.90], [0.15, 0.45, 0.85]],
        ("signs", "vi"): [[0.0, 0.0, 0.0]] * 3})), _settings())
    assert c.verdict == Verdict.REPRODUCED and c.estimate == pytest.approx(0.7)
    assert -1 <= c.ci95[0] and c.ci95[1] <= 1 and c.k_of_n == "3 of 3 seeds"
    assert [e["condition"] for e in c.excluded] == ["signs/vi"]
    assert c.excluded[0]["reason"].startswith("floor")


def test_robustness_decreases_with_epsilon_not_reproduced():
    # a posterior whose estimate falls a little over the grid in every seed (not at 0 or 1)
    c = S.claim_robustness_decreases_with_epsilon(_records(_pgd({
        ("digits", "hmc"): [[0.10, 0.4, 0.80], [0.20, 0.5, 0.90], [0.15, 0.45, 0.85]],
        ("digits", "vi"): [[0.35, 0.32, 0.30], [0.36, 0.33, 0.30], [0.34, 0.31, 0.30]]})),
        _settings())
    assert c.verdict == Verdict.NOT_REPRODUCED and "digits/vi" in c.interval_method
    assert c.ci95[1] < 0


def test_robustness_decreases_with_epsilon_inconclusive():
    c = S.claim_robustness_decreases_with_epsilon(_records(_pgd({
        ("digits", "mc_dropout"): [[0.2, 0.3, 0.5], [0.4, 0.4, 0.35], [0.3, 0.3, 0.4]]})),
        _settings())
    assert c.verdict == Verdict.INCONCLUSIVE and c.power and c.ci95[0] < 0 < c.ci95[1]


def test_robustness_ceiling_is_left_out_and_nothing_left_is_inconclusive():
    c = S.claim_robustness_decreases_with_epsilon(_records(_pgd({
        ("digits", "vi"): [[1.0, 1.0, 1.0]] * 3})), _settings())
    assert c.verdict == Verdict.INCONCLUSIVE and c.excluded[0]["reason"].startswith("ceiling")


# ----------------------------------------------------------------------------- sequential


def _sequential(ratios_by_dataset, *, constant_dataset=None) -> list[S.Cell]:
    """Per data set and seed one informative cell (p_hat 0.05) that stopped at ``ratio * N``,
    beside a constant cell (p_hat 0, stopped early) that must not count."""
    cells = []
    for ds, ratios in ratios_by_dataset.items():
        for seed, r in enumerate(ratios):
            cells.append(_cell(ds, "vi", seed, 0.05, 0.05, n_seq=round(r * N)))
            cells.append(_cell(ds, "vi", seed, 0.02, 0.0, n_seq=60))
    if constant_dataset:
        cells += [_cell(constant_dataset, "vi", s, 0.05, 0.0, n_seq=60) for s in range(3)]
    return cells


def test_sequential_saves_samples_reproduced():
    c = S.claim_sequential_saves_samples(
        _records(_sequential({"digits": [0.40, 0.45, 0.42]}, constant_dataset="signs")),
        _settings())
    assert c.verdict == Verdict.REPRODUCED and 0 < c.ci95[0] <= c.estimate <= c.ci95[1] < 1
    assert c.estimate == pytest.approx((0.40 * 0.45 * 0.42) ** (1 / 3), rel=1e-2)  # not 60/738
    assert [e["condition"] for e in c.excluded] == ["signs"]
    assert c.details["informative_cells_per_seed"]["signs"] == {0: 0, 1: 0, 2: 0}


def test_sequential_saves_samples_not_reproduced():
    # the informative cells sit near p = 1/2: the scheme saves little in every seed
    c = S.claim_sequential_saves_samples(
        _records(_sequential({"digits": [0.4, 0.42, 0.41], "signs": [0.9, 0.95, 0.85]})),
        _settings())
    assert c.verdict == Verdict.NOT_REPRODUCED and 0.5 < c.ci95[0] <= c.ci95[1]
    assert "signs" in c.interval_method


def test_sequential_saves_samples_inconclusive():
    c = S.claim_sequential_saves_samples(_records(_sequential({"digits": [0.3, 0.6, 0.45]})),
                                         _settings())
    assert c.verdict == Verdict.INCONCLUSIVE and c.ci95[0] < 0.5 < c.ci95[1] and c.power


# ----------------------------------------------------------------------------- methods


def _methods(hmc, vi, mcd) -> list[S.Cell]:
    """Per-seed PGD p_hat at the middle eps (0.05) of HMC, VI and MC dropout on digits; other
    radii far off, so a claim that read the wrong eps would fail."""
    table = {("digits", inf): [[0.99, p, 0.01] for p in ps]
             for inf, ps in (("hmc", hmc), ("vi", vi), ("mc_dropout", mcd))}
    return _pgd(table) + _pgd({("signs", "vi"): [[0.0, 0.1, 0.2]] * 3})


def test_hmc_more_robust_than_approximations_reproduced():
    c = S.claim_hmc_more_robust_than_approximations(
        _records(_methods(hmc=[0.10, 0.12, 0.11], vi=[0.50, 0.55, 0.52],
                          mcd=[0.60, 0.65, 0.62])), _settings())
    assert c.verdict == Verdict.REPRODUCED and c.k_of_n == "3 of 3 seeds"
    assert "Bonferroni 97.5% for 2 comparisons" in c.interval_method
    assert [d["condition"] for d in c.details["conditions"]] == ["digits: vi - hmc",
                                                                 "digits: mc_dropout - hmc"]


def test_hmc_more_robust_than_approximations_not_reproduced():
    # VI is the more robust one, clearly, in every seed
    c = S.claim_hmc_more_robust_than_approximations(
        _records(_methods(hmc=[0.60, 0.62, 0.61], vi=[0.10, 0.15, 0.12],
                          mcd=[0.70, 0.75, 0.72])), _settings())
    assert c.verdict == Verdict.NOT_REPRODUCED and "vi - hmc" in c.interval_method
    assert c.ci95[1] < 0 and c.ci95[0] >= -1


def test_hmc_more_robust_than_approximations_inconclusive():
    c = S.claim_hmc_more_robust_than_approximations(
        _records(_methods(hmc=[0.30, 0.40, 0.35], vi=[0.50, 0.30, 0.45],
                          mcd=[0.60, 0.65, 0.62])), _settings())
    assert c.verdict == Verdict.INCONCLUSIVE and c.power


def test_hmc_comparison_is_wider_than_an_uncorrected_interval():
    """Bonferroni: a difference that a plain 95% interval would decide stays undecided."""
    from studylib.stats import paired_difference

    hmc, vi = [0.30, 0.34, 0.32], [0.36, 0.385, 0.41]
    plain = paired_difference(vi, hmc)
    assert plain.lo > 0
    c = S.claim_hmc_more_robust_than_approximations(
        _records(_methods(hmc=hmc, vi=vi, mcd=[0.9, 0.92, 0.91])), _settings())
    vi_row = c.details["conditions"][0]
    assert vi_row["ci95"][0] < 0 < plain.lo and c.verdict == Verdict.INCONCLUSIVE


def test_hmc_comparison_without_hmc_is_inconclusive():
    cells = [c for c in _methods([0.1] * 3, [0.5] * 3, [0.6] * 3) if c.inference != "hmc"]
    c = S.claim_hmc_more_robust_than_approximations(_records(cells), _settings())
    assert c.verdict == Verdict.INCONCLUSIVE and "HMC was not run" in c.excluded[0]["reason"]


# ----------------------------------------------------------------------------- sanity checks


def _cov(method, failures, repetitions=200) -> S.CoverageRow:
    return S.CoverageRow(0, "vi", 0, 0.05, method, 0.5, 14760, repetitions, failures, 738.0)


def _bracketed(pgd_by_eps, ibp_by_eps) -> list[S.Cell]:
    return ([_cell("digits", "vi", 0, e, p, outcome="pgd") for e, p in pgd_by_eps.items()]
            + [_cell("digits", "vi", 0, e, p, outcome="fgsm") for e, p in pgd_by_eps.items()]
            + [_cell("digits", "vi", 0, e, p, outcome="ibp") for e, p in ibp_by_eps.items()])


def test_sanity_checks_pass_and_report_the_attacks():
    cells = _bracketed({0.02: 0.3, 0.05: 0.2, 0.1: 0.6}, {0.02: 0.5, 0.05: 0.9, 0.1: 1.0})
    checks = S.check_sanity(cells, [_cov("chernoff", 2), _cov("sequential", 3)], conf=0.05)
    assert checks.bracket_comparisons == 6 and checks.ibp_monotone_comparisons == 2
    assert checks.max_attack_eps_drop == pytest.approx(0.1)  # reported, not asserted
    assert checks.coverage["sequential"]["failures"] == 3
    assert checks.mean_gap_ibp_minus_pgd == pytest.approx((0.2 + 0.7 + 0.4) / 3)


def test_sanity_check_raises_when_an_attack_beats_ibp():
    cells = _bracketed({0.02: 0.3, 0.05: 0.95}, {0.02: 0.5, 0.05: 0.9})
    with pytest.raises(S.SanityCheckFailed, match="exceeds the IBP"):
        S.check_sanity(cells, [], conf=0.05)


def test_sanity_check_raises_when_ibp_falls_with_eps():
    cells = _bracketed({0.02: 0.1, 0.05: 0.1}, {0.02: 0.6, 0.05: 0.5})
    with pytest.raises(S.SanityCheckFailed, match="falls as eps grows"):
        S.check_sanity(cells, [], conf=0.05)


def test_sanity_check_raises_when_coverage_fails():
    cells = _bracketed({0.02: 0.1}, {0.02: 0.6})
    S.check_sanity(cells, [_cov("chernoff", 14)], conf=0.05)  # 7%: not significantly > 5%
    with pytest.raises(S.SanityCheckFailed, match="chernoff"):
        S.check_sanity(cells, [_cov("chernoff", 30)], conf=0.05)


# ----------------------------------------------------------------------------- guarantee, coverage


def _fit(**kw) -> S.PosteriorFit:
    base = dict(dataset="digits", seed=0, inference="hmc", clean_accuracy=0.9, networks=N,
                hmc_accept_rate=0.8, iid=False)
    return S.PosteriorFit(**{**base, **kw})


def test_mcmc_samples_carry_the_guarantee_only_with_enough_effective_samples():
    assert _fit(iid=True, inference="vi").guarantee(N)
    assert _fit(predictive_ess=N + 1, predictive_rhat=1.01).guarantee(N)
    assert not _fit(predictive_ess=N / 2, predictive_rhat=1.01).guarantee(N)
    assert not _fit(predictive_ess=2 * N, predictive_rhat=1.3).guarantee(N)  # not mixed
    assert not _fit().guarantee(N)  # diagnostics missing: no guarantee


def test_output_thresholds_are_per_data_set():
    s = _settings()
    assert s.delta("digits") == 0.25 and s.delta("signs") == 0.75
    with pytest.raises(ValueError, match="no threshold"):
        s.delta("cifar10")


def test_study_estimates_are_checked_against_the_pool_of_the_same_cell():
    pool_row = S.CoverageRow(0, "vi", 0, 0.05, "chernoff", 0.40, 20 * N, 200, 3, N)
    near = _cell("digits", "vi", 0, 0.05, 0.43)
    far = _cell("digits", "vi", 0, 0.05, 0.60, point=0)
    other_ds = _cell("signs", "vi", 0, 0.05, 0.99)
    rows = S._study_estimate_coverage([near, other_ds], [pool_row], dataset="digits", err=0.05)
    assert [(r.method, r.failures, r.repetitions) for r in rows] == [("study", 0, 1)]
    rows = S._study_estimate_coverage([far], [pool_row], dataset="digits", err=0.05)
    assert rows[0].failures == 1 and rows[0].p_pool == 0.40
    # many misses are a bug, not a finding: the sanity check stops the run
    misses = [S.CoverageRow(0, "vi", i, 0.05, "study", 0.4, N, 1, 1, N) for i in range(20)]
    with pytest.raises(S.SanityCheckFailed, match="study"):
        S.check_sanity([], misses, conf=0.05)
    S.check_sanity([], misses[:1] + [dataclasses.replace(m, failures=0) for m in misses[1:]],
                   conf=0.05)
