"""Verdicts: rules that can come out either way, and the typed ``Claim`` every study returns.

A rule compares an interval with a threshold:

==================  ====================================  ==================================
kind                reproduced when                       not reproduced when
==================  ====================================  ==================================
``at_least``        ``lo >= threshold``                   ``hi < threshold - margin``
``greater``         ``lo > threshold``                    ``hi <= threshold - margin``
``at_most``         ``hi <= threshold``                   ``lo > threshold + margin``
``less``            ``hi < threshold``                    ``lo >= threshold + margin``
``equivalent``      ``[lo, hi]`` inside ``[t - m, t + m]``   ``[lo, hi]`` wholly outside it
``non_inferior``    ``lo >= threshold - margin``          ``hi < threshold - margin``
==================  ====================================  ==================================

and *inconclusive* otherwise, or when the interval is undefined (one seed). The ``margin`` of
a one-sided rule is the distance below (above) the threshold that still counts as
"not decided" rather than "not reproduced" (0 by default); for ``equivalent`` and
``non_inferior`` it is the tolerance delta of "matches" / "suffices".

:func:`in_every_condition` combines one decision per condition (an eps, a data set, an
architecture): conditions where the quantity is uninformative (every model at the floor or
ceiling in every seed) are left out and reported; *reproduced* needs every remaining
condition reproduced, one condition not reproduced makes the claim not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .intervals import Interval, check_inside_range, seeds_needed

CLAIM_SCHEMA = 2  # 2: claims carry their quantity's natural range ("range")


class Verdict(StrEnum):
    """The three verdicts; compares equal to its string (``Verdict.REPRODUCED == "reproduced"``)."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"


RULE_KINDS = ("at_least", "greater", "at_most", "less", "equivalent", "non_inferior")


@dataclass(frozen=True)
class Rule:
    """How an interval is judged against ``threshold`` (see the module table)."""

    kind: str
    threshold: float
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"rule kind {self.kind!r} is not one of {', '.join(RULE_KINDS)}")
        if not math.isfinite(self.threshold) or not self.margin >= 0:
            raise ValueError(f"need a finite threshold and a margin >= 0, got "
                             f"{self.threshold}, {self.margin}")
        if self.kind == "equivalent" and self.margin == 0:
            raise ValueError("an equivalence rule needs a margin (the tolerance delta) > 0")

    def describe(self) -> str:
        t, m = f"{self.threshold:g}", f"{self.margin:g}"
        return {"at_least": f">= {t}", "greater": f"> {t}", "at_most": f"<= {t}",
                "less": f"< {t}", "equivalent": f"within {t} +- {m}",
                "non_inferior": f">= {self.threshold - self.margin:g} (non-inferiority, "
                                f"margin {m})"}[self.kind] + (
                    f" (margin {m})" if self.margin and self.kind in
                    ("at_least", "greater", "at_most", "less") else "")

    def decide(self, lo: float, hi: float) -> Verdict:
        """The verdict for an interval ``[lo, hi]``."""
        if math.isnan(lo) or math.isnan(hi):
            return Verdict.INCONCLUSIVE
        if lo > hi:
            raise ValueError(f"interval ends out of order: [{lo}, {hi}]")
        t, m = self.threshold, self.margin
        k = self.kind
        if k == "at_least":
            yes, no = lo >= t, hi < t - m
        elif k == "greater":
            yes, no = lo > t, hi <= t - m
        elif k == "at_most":
            yes, no = hi <= t, lo > t + m
        elif k == "less":
            yes, no = hi < t, lo >= t + m
        elif k == "equivalent":
            yes, no = (t - m <= lo and hi <= t + m), (lo > t + m or hi < t - m)
        else:  # non_inferior
            yes, no = lo >= t - m, hi < t - m
        if yes:
            return Verdict.REPRODUCED
        if no:
            return Verdict.NOT_REPRODUCED
        return Verdict.INCONCLUSIVE

    def on_claimed_side(self, value: float) -> bool:
        """Whether one seed's value lies where the claim says (for "k of n seeds")."""
        t, m = self.threshold, self.margin
        return {"at_least": value >= t, "greater": value > t, "at_most": value <= t,
                "less": value < t, "equivalent": abs(value - t) <= m,
                "non_inferior": value >= t - m}[self.kind]


def at_floor_or_ceiling(values: Iterable[float] | np.ndarray, floor: float = 0.0,
                        ceiling: float = 1.0) -> str | None:
    """``"floor"`` / ``"ceiling"`` when every value (every model, every seed) sits there."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    if arr.size == 0:
        return None
    if np.all(arr <= floor):
        return "floor"
    if np.all(arr >= ceiling):
        return "ceiling"
    return None


@dataclass(frozen=True)
class ConditionDecision:
    """One condition of a claim: its interval and verdict, or why it was left out."""

    condition: str
    interval: Interval
    verdict: Verdict
    rule: Rule
    excluded: str | None = None  # e.g. "floor: every model 0.0 in every seed"

    def margin_to_threshold(self) -> float:
        """How far the interval's unfavourable end lies on the claimed side (negative: not)."""
        r, iv = self.rule, self.interval
        lo, hi = iv.ci95 if iv.defined else (iv.estimate, iv.estimate)  # one seed: its value
        if math.isnan(lo) or math.isnan(hi):
            return -math.inf
        if r.kind in ("at_least", "greater"):
            return lo - r.threshold
        if r.kind == "non_inferior":
            return lo - (r.threshold - r.margin)
        if r.kind in ("at_most", "less"):
            return r.threshold - hi
        return r.margin - max(abs(lo - r.threshold), abs(hi - r.threshold))


def decide_condition(condition: str, interval: Interval, rule: Rule, *,
                     uninformative: str | None = None) -> ConditionDecision:
    """Decide one condition, or leave it out when ``uninformative`` names why."""
    if uninformative:
        return ConditionDecision(condition, interval, Verdict.INCONCLUSIVE, rule, uninformative)
    return ConditionDecision(condition, interval, rule.decide(interval.lo, interval.hi), rule)


def in_every_condition(decisions: Sequence[ConditionDecision]) -> tuple[Verdict, list[dict]]:
    """Combine per-condition decisions: every informative condition must hold.

    Returns the verdict and the conditions left out (``[{"condition", "reason"}]``). With
    every condition left out there is nothing to decide: inconclusive.
    """
    excluded = [{"condition": d.condition, "reason": d.excluded} for d in decisions
                if d.excluded]
    kept = [d.verdict for d in decisions if not d.excluded]
    if not kept:
        return Verdict.INCONCLUSIVE, excluded
    if Verdict.NOT_REPRODUCED in kept:
        return Verdict.NOT_REPRODUCED, excluded
    if all(v == Verdict.REPRODUCED for v in kept):
        return Verdict.REPRODUCED, excluded
    return Verdict.INCONCLUSIVE, excluded


@dataclass(frozen=True)
class PaperValue:
    """The paper's own figure for a claim: ``value`` as stated, and ``where`` it is stated."""

    value: str
    where: str


@dataclass(frozen=True)
class Claim:
    """A claim's verdict with everything behind it (results.json's ``claims`` entries).

    Attributes:
        id, statement: the claim's fixed id and what it says, as tested.
        verdict: computed by ``rule`` from ``ci95``, never typed in.
        estimate, ci95: the number the verdict rests on and its interval: one field pair,
            printed together.
        rule: kind, threshold and margin.
        interval_method: how ``ci95`` was computed (``"fisher-z t over 3 seeds"``).
        n_seeds: seeds behind the estimate; seeds_on_claimed_side: how many of them lie on the
            claimed side by themselves ("3 of 3").
        excluded: conditions left out and why (``[{"condition", "reason"}]``).
        power: for an inconclusive verdict, how many seeds would decide it (text), else None.
        paper_value: the paper's figure, or None where the paper is qualitative.
        details: further numbers (per condition, per seed), JSON-able.
        natural_range: the quantity's natural range (``[-1, 1]`` for a correlation, ``(0,
            inf)`` for a ratio, ``[0, 1]`` for a proportion); ``ci95`` must lie inside it.
    """

    id: str
    statement: str
    verdict: Verdict
    estimate: float
    ci95: tuple[float, float]
    rule: Rule
    interval_method: str
    n_seeds: int
    seeds_on_claimed_side: int
    excluded: tuple[dict, ...] = ()
    power: str | None = None
    paper_value: PaperValue | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    natural_range: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        lo, hi = self.ci95
        check_inside_range(lo, hi, self.natural_range, f"claim {self.id}")
        if not (math.isnan(lo) or math.isnan(hi)) and not lo <= self.estimate <= hi:
            # a percentile bootstrap, or the plain mean of proportions beside a logit-scale
            # interval, may lie outside it; anything else is a bug
            if not self.interval_method.startswith(("hierarchical bootstrap", "bootstrap",
                                                    "logit")) \
                    and not math.isclose(self.estimate, min(max(self.estimate, lo), hi),
                                         rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"claim {self.id}: estimate {self.estimate} outside its "
                                 f"interval [{lo}, {hi}]")
        if not 0 <= self.seeds_on_claimed_side <= self.n_seeds:
            raise ValueError(f"claim {self.id}: {self.seeds_on_claimed_side} of "
                             f"{self.n_seeds} seeds")

    @property
    def k_of_n(self) -> str:
        return f"{self.seeds_on_claimed_side} of {self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"

    def to_json(self) -> dict[str, Any]:
        """The results.json form (schema :data:`CLAIM_SCHEMA`); NaN becomes None."""
        def clean(x: float) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

        return {"schema": CLAIM_SCHEMA, "id": self.id, "statement": self.statement,
                "verdict": self.verdict.value, "estimate": clean(self.estimate),
                "ci95": [clean(self.ci95[0]), clean(self.ci95[1])],
                "interval": self.interval_method, "rule": asdict(self.rule),
                "threshold": self.rule.threshold, "n_seeds": self.n_seeds,
                "seeds_on_claimed_side": self.seeds_on_claimed_side,
                "excluded": list(self.excluded), "power": self.power,
                "paper_value": asdict(self.paper_value) if self.paper_value else None,
                "range": [None if not math.isfinite(x) else float(x) for x in self.natural_range],
                "details": dict(self.details)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Claim:
        """Read a results.json claim back, checking the schema and the verdict's consistency."""
        if obj.get("schema") != CLAIM_SCHEMA:
            raise ValueError(f"claim {obj.get('id')!r}: schema {obj.get('schema')!r}, "
                             f"expected {CLAIM_SCHEMA}")

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        rule = Rule(**obj["rule"])
        claim = cls(id=obj["id"], statement=obj["statement"], verdict=Verdict(obj["verdict"]),
                    estimate=num(obj["estimate"]),
                    ci95=(num(obj["ci95"][0]), num(obj["ci95"][1])), rule=rule,
                    interval_method=obj["interval"], n_seeds=int(obj["n_seeds"]),
                    seeds_on_claimed_side=int(obj["seeds_on_claimed_side"]),
                    excluded=tuple(obj.get("excluded") or ()), power=obj.get("power"),
                    paper_value=PaperValue(**obj["paper_value"]) if obj.get("paper_value")
                    else None, details=obj.get("details") or {},
                    natural_range=(-math.inf if obj["range"][0] is None else float(obj["range"][0]),
                                   math.inf if obj["range"][1] is None else float(obj["range"][1])))
        return claim

    def block(self) -> str:
        """A short readable block: verdict and id, statement, estimate [interval] vs the rule,
        k of n seeds, what was left out, the power line, the paper's figure."""
        from ..core.formatting import fmt

        lines = [f"[{self.verdict.value}] {self.id}", f"  {self.statement}",
                 f"  estimate {fmt(self.estimate)} {fmt(list(self.ci95))} "
                 f"({self.interval_method}); rule: {self.rule.describe()}; {self.k_of_n} on "
                 "the claimed side"]
        conditions = self.details.get("conditions") if isinstance(self.details, Mapping) else None
        if conditions and len(conditions) > 1:
            for row in conditions:
                if not row.get("excluded"):
                    lines.append(f"    {row['condition']}: {fmt(row['estimate'])} "
                                 f"{fmt(row['ci95'])} vs {row['rule']} -> {row['verdict']}")
        for ex in self.excluded:
            lines.append(f"  left out: {ex['condition']} ({ex['reason']})")
        if self.power:
            lines.append(f"  {self.power}")
        if self.paper_value:
            lines.append(f"  paper: {self.paper_value.value} ({self.paper_value.where})")
        return "\n".join(lines)


def in_some_group(groups: Sequence[Sequence[ConditionDecision]]) -> tuple[Verdict, int]:
    """An existential claim ("at some level"), the dual of :func:`in_every_condition`: the
    verdict of "the conditions of at least one group all hold", and the decisive group's index.

    Reproduced when some group is reproduced (every informative condition of it), not
    reproduced when every group is not reproduced, inconclusive otherwise. The decisive group is
    among those with the overall verdict, the one whose least favourable condition lies farthest
    on the claimed side.
    """
    if not groups:
        raise ValueError("no groups to decide")
    verdicts = [in_every_condition(g)[0] for g in groups]
    if Verdict.REPRODUCED in verdicts:
        verdict = Verdict.REPRODUCED
    elif all(v == Verdict.NOT_REPRODUCED for v in verdicts):
        verdict = Verdict.NOT_REPRODUCED
    else:
        verdict = Verdict.INCONCLUSIVE
    same = [i for i, v in enumerate(verdicts) if v == verdict]
    return verdict, max(same, key=lambda i: min(d.margin_to_threshold() for d in groups[i]))


def power_line(interval: Interval, rule: Rule) -> str | None:
    """For an undecided interval: how many seeds the observed effect and spread would need."""
    target = rule.threshold
    if rule.kind == "non_inferior":
        target = rule.threshold - rule.margin
    elif rule.kind == "equivalent":
        # the nearer edge of the equivalence band decides
        edges = (rule.threshold - rule.margin, rule.threshold + rule.margin)
        target = min(edges, key=lambda e: abs(e - interval.estimate))
    n = seeds_needed(interval, target)
    if n is None:
        if interval.n < 2 and math.isnan(interval.lo):
            return "one seed gives no interval: run at least 2 (more to decide)"
        if interval.n < 2:
            return ("one seed: the interval covers its test items only, not the spread "
                    "between seeds; run at least 2 (more to decide)")
        return "the observed effect and spread do not say how many seeds would decide it"
    if n <= interval.n:
        return (f"about {n} seeds would decide it at the observed mean and spread; with "
                f"{interval.n} the interval still straddles the threshold")
    return f"about {n} seeds would decide it at the observed effect and spread"


def make_claim(id: str, statement: str, interval: Interval, rule: Rule, *,
               excluded: Sequence[dict] = (), verdict: Verdict | None = None,
               paper_value: PaperValue | None = None,
               details: Mapping[str, Any] | None = None) -> Claim:
    """Build a :class:`Claim` from an interval and a rule (the verdict from the rule, unless
    ``verdict`` is the combination of several conditions decided by :func:`in_every_condition`).
    """
    v = verdict if verdict is not None else rule.decide(interval.lo, interval.hi)
    if interval.values:
        n, k = interval.n, sum(rule.on_claimed_side(x) for x in interval.values)
    else:  # a count over trials: one unit, on the claimed side if reproduced
        n, k = 1, int(v == Verdict.REPRODUCED)
    return Claim(id=id, statement=statement, verdict=v, estimate=interval.estimate,
                 ci95=interval.ci95, rule=rule, interval_method=interval.method, n_seeds=n,
                 seeds_on_claimed_side=k, excluded=tuple(excluded),
                 power=power_line(interval, rule) if v == Verdict.INCONCLUSIVE else None,
                 paper_value=paper_value, details=dict(details or {}),
                 natural_range=interval.bounds)


def claim_over_conditions(id: str, statement: str, decisions: Sequence[ConditionDecision], *,
                          paper_value: PaperValue | None = None,
                          details: Mapping[str, Any] | None = None) -> Claim:
    """A claim that must hold in every condition (:func:`in_every_condition`).

    The claim's estimate, interval and rule are those of its *decisive* condition: among the
    informative conditions with the claim's verdict, the one whose interval lies least far on
    the claimed side. A seed counts as on the claimed side when its value is, in every
    informative condition. Every condition's numbers go to ``details["conditions"]``.
    """
    if not decisions:
        raise ValueError(f"claim {id}: no conditions to decide")
    verdict, excluded = in_every_condition(decisions)
    kept = [d for d in decisions if not d.excluded] or list(decisions)
    same = [d for d in kept if d.verdict == verdict] or kept
    decisive = min(same, key=lambda d: d.margin_to_threshold())
    lengths = {len(d.interval.values) for d in kept}
    if len(lengths) == 1 and 0 not in lengths and not all(d.excluded for d in decisions):
        n = lengths.pop()
        k = sum(all(d.rule.on_claimed_side(d.interval.values[i]) for d in kept
                    if not d.excluded) for i in range(n))
    else:
        n = decisive.interval.n
        k = sum(decisive.rule.on_claimed_side(v) for v in decisive.interval.values)
    table = [{"condition": d.condition, "estimate": d.interval.estimate,
              "ci95": list(d.interval.ci95), "interval": d.interval.method,
              "rule": d.rule.describe(), "verdict": d.verdict.value,
              "per_seed": list(d.interval.values), "excluded": d.excluded} for d in decisions]
    iv = decisive.interval
    return Claim(id=id, statement=statement, verdict=verdict, estimate=iv.estimate,
                 ci95=iv.ci95, rule=decisive.rule,
                 interval_method=f"{iv.method}; decisive condition: {decisive.condition}",
                 n_seeds=n, seeds_on_claimed_side=k, excluded=tuple(excluded),
                 power=power_line(iv, decisive.rule) if verdict == Verdict.INCONCLUSIVE
                 else None, paper_value=paper_value,
                 details={"conditions": table, **dict(details or {})},
                 natural_range=iv.bounds)
