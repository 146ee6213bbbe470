"""The comparisons of ``make bench`` (issue: side-by-side benchmarks).

Each case builds its inputs from embedded data with fixed seeds, checks that studylib's path and
the reference give equal results (a mismatch raises), and only then times both.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import torch

from studylib import paths
from studylib.data import load
from studylib.models import build_model
from studylib.training import TrainConfig, fit

from .harness import BenchmarkMismatch, CaseResult, Timing

CASES: dict[str, Callable[[torch.device, int], CaseResult]] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def _digits_cnn(device: torch.device):
    data = load("digits", image_size=28, seed=0)
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=28, seed=0)
    model = fit(model, data, TrainConfig(epochs=8, batch_size=64), seed=0, device=device,
                desc="bench model")
    return data, model


@case("pgd_vs_torchattacks")
def pgd_vs_torchattacks(device: torch.device, reps: int) -> CaseResult:
    """4. studylib PGD vs torchattacks PGD: robust accuracy within 1 point, time ratio <= 1.1."""
    import torchattacks

    from studylib.attacks import pgd

    data, model = _digits_cnn(device)
    x, y = data.test.x[:256].to(device), data.test.y[:256].to(device)
    eps, steps = 0.1, 10
    alpha = 2.5 * eps / steps
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)

    def ours():
        return pgd(model, x, y, eps, steps=steps, step_size=alpha, seed=0)

    def theirs():
        torch.manual_seed(0)
        return ta(x, y)

    x_ours, x_ref = ours(), theirs()  # torchattacks needs autograd on: not under no_grad
    with torch.no_grad():
        acc_ours = float((model(x_ours).argmax(1) == y).float().mean())
        acc_ref = float((model(x_ref).argmax(1) == y).float().mean())
    if abs(acc_ours - acc_ref) > 0.01:
        raise BenchmarkMismatch(f"robust accuracy {acc_ours:.3f} vs torchattacks {acc_ref:.3f}")
    t_ours, t_ref = Timing.of(ours, reps, device), Timing.of(theirs, reps, device)
    ratio = t_ours.median_s / t_ref.median_s
    return CaseResult("pgd_vs_torchattacks", "PGD-10, eps 0.1, 256 digits (CNN)",
                      f"robust acc {acc_ours:.3f} vs {acc_ref:.3f}", t_ours, t_ref, ratio,
                      ratio_kind="time ratio (ours / reference)", target="<= 1.1",
                      target_met=ratio <= 1.1)


@case("sequential_vs_chernoff")
def sequential_vs_chernoff(device: torch.device, reps: int) -> CaseResult:
    """6. Samples drawn by the sequential Massart scheme vs Chernoff (counts, not time)."""
    from studylib.verification import chernoff_sample_size, estimate_probability

    err = conf = 0.05
    n_ch = chernoff_sample_size(err, conf)
    rng = np.random.default_rng(0)
    counts = {}
    for p in (0.01, 0.1, 0.5):
        used = []
        for _ in range(50):
            outcomes = (rng.random(n_ch) < p).astype(float)
            seq = estimate_probability(outcomes, err=err, conf=conf, method="sequential")
            ch = estimate_probability(outcomes, err=err, conf=conf, method="chernoff")
            if ch.n_used != n_ch or seq.n_used > n_ch:
                raise BenchmarkMismatch("sequential scheme used more samples than Chernoff")
            used.append(seq.n_used)
        counts[f"p={p}"] = f"{np.median(used):.0f} vs {n_ch}"
    return CaseResult("sequential_vs_chernoff", "Statistical verification: samples, sequential vs Chernoff (err = conf = 0.05, median of 50 runs)",
                      "sequential n <= Chernoff n", ratio=None, ratio_kind="counts",
                      target="fewer samples near 0 or 1", target_met=None, extra=counts)


@case("whole_study")
def whole_study(device: torch.device, reps: int) -> CaseResult:
    """8. Each notebook's runtime at the default profile (from its results.json)."""
    root = paths.OUTPUTS_DIR / "default"
    runtimes = {}
    for res in sorted(root.glob("*/results.json")):
        obj = json.loads(res.read_text())
        runtimes[obj["study"]] = obj["runtime_s"]
        if obj.get("peak_rss_mib") is not None:
            runtimes[obj["study"] + " peak MiB"] = obj["peak_rss_mib"]
    total = sum(v for k, v in runtimes.items() if not k.endswith("MiB"))
    extra = {k: (f"{v:.0f} s" if not k.endswith("MiB") else f"{v:.0f}") for k, v in runtimes.items()}
    extra["sum"] = f"{total / 60:.1f} min"
    return CaseResult("whole_study", "Whole study at the default profile (outputs/default/*/results.json)",
                      "-", ratio=None, ratio_kind="minutes", target="<= 30 min, <= 4 GiB",
                      target_met=(total <= 1800) if runtimes else None, extra=extra)
