"""Every registered claim has its three hand-built cases: reproduced, not reproduced and
inconclusive (a rule that cannot give one of them is a defect). Studies move into
``studylib.studies`` one by one; each one registered there is held to this."""

from __future__ import annotations

import importlib

from studylib.studies import CLAIMS

CASES = ("reproduced", "not_reproduced", "inconclusive")


def test_every_claim_has_its_three_cases():
    assert CLAIMS, "no study registers its claims"
    missing = []
    for study, claims in CLAIMS.items():
        tests = importlib.import_module(f"test_claims_{study[:2]}")
        for claim_id in claims:
            missing += [f"{study}: test_{claim_id}_{case}" for case in CASES
                        if not callable(getattr(tests, f"test_{claim_id}_{case}", None))]
    assert not missing, "claims without their three cases:\n  " + "\n  ".join(missing)


def test_claim_ids_match_the_functions():
    for claims in CLAIMS.values():
        for claim_id, fn in claims.items():
            assert fn.__name__ == f"claim_{claim_id}"
