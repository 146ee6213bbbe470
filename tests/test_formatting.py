"""studylib.core.formatting.fmt: hand-computed cases, and the invariant nbval relies on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from studylib.core.formatting import fmt, fmt_table


@pytest.mark.parametrize("value, text", [
    (0.123456, "0.123"),
    (0.8300000190734863, "0.83"),  # a float32 accuracy: no float noise in the last digits
    (97.03, "97"),
    (-0.37, "-0.37"),
    (1234.5, "1.23e3"),
    (0.000123456, "0.000123"),
    (3.474e-7, "< 1e-06"),  # the relative psi change of issue 15: noise, not a result
    (-2e-9, "> -1e-06"),
    (0.0, "0"),
    (226, "226"),
    (np.int64(21430), "21430"),
    (np.float32(0.5), "0.5"),
    (np.array(0.25), "0.25"),
    (None, "n/a"),
    (math.nan, "n/a"),
    (math.inf, "inf"),
    (True, "True"),
    ("pgd", "pgd"),
])
def test_fmt_hand_computed(value, text):
    assert fmt(value) == text


def test_fmt_containers_and_options():
    assert fmt([0.9123, 0.9876]) == "[0.912, 0.988]"
    assert fmt((math.nan, math.nan)) == "[n/a, n/a]"
    assert fmt({"fo": 0.90351, "random": -0.0681}) == "{fo: 0.904, random: -0.0681}"
    assert fmt(pd.Series([0.5, 0.25])) == "[0.5, 0.25]"
    assert fmt(torch.tensor([1.0, 2.5])) == "[1, 2.5]"
    assert fmt(0.11, plus=True) == "+0.11" and fmt(-0.11, plus=True) == "-0.11"
    assert fmt(3, plus=True) == "+3"
    assert fmt(0.123456, sig=2) == "0.12"
    assert fmt(3.474e-7, floor=None) == "3.47e-7"
    assert fmt(3.474e-7, floor=1e-9) == "3.47e-7"
    with pytest.raises(ValueError, match="sig"):
        fmt(1.0, sig=0)
    with pytest.raises(TypeError, match="object"):
        fmt(object())


def test_fmt_hides_noise_below_the_precision_it_prints():
    """Two values that differ only in float noise print the same text."""
    rng = np.random.default_rng(0)
    for x in rng.uniform(-100, 100, size=200):
        # a relative change of 1e-9 moves a value across a rounding boundary only if it lies
        # within 1e-9 of one, which these draws do not
        assert fmt(x) == fmt(x * (1 + 1e-9))


def test_fmt_table_formats_values_and_keeps_labels():
    df = pd.DataFrame({"accuracy": [0.8304, 0.91]}, index=["mlp", "cnn"])
    text = fmt_table(df)
    assert "0.83" in text and "0.91" in text and "mlp" in text and "0.8304" not in text
    assert fmt_table(df, index=False).split() == ["accuracy", "0.83", "0.91"]
