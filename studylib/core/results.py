"""The ``results.json`` contract: what every study writes, checked when written and read.

Every study writes one flat ``results.json`` (schema in ``shared/DESIGN.md``), so readers never
parse notebooks or logs. Its claims are typed (:class:`studylib.stats.Claim`, whose own schema
version each claim carries); the intervals and rules that decide them live in
``studylib.stats``, never here.
"""

from __future__ import annotations

from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
STATUSES = ("ok", "failed")


# ----------------------------------------------------------------------------- contract

_REQUIRED = {
    "study": str,
    "profile": str,
    "status": str,
    "seeds": list,
    "device": str,
    "runtime_s": (int, float),
    "params": dict,
    "metrics": dict,
    "claims": list,
}


def validate_results(obj: dict[str, Any]) -> dict[str, Any]:
    """Check ``obj`` against the results.json contract; return it, or raise ``ValueError``.

    Required keys and types: study, profile, status ("ok" | "failed"), seeds, device,
    runtime_s, params, metrics (name -> number or null), claims (each a typed claim that
    :meth:`studylib.stats.Claim.from_json` reads back: its schema version, its estimate inside
    its interval and the interval inside its quantity's range; ids unique). A failed study
    also has "error".
    """
    if not isinstance(obj, dict):
        raise ValueError("results must be a JSON object")
    for key, typ in _REQUIRED.items():
        if key not in obj:
            raise ValueError(f"results.json is missing key {key!r}")
        if not isinstance(obj[key], typ) or isinstance(obj[key], bool) and typ is not bool:
            raise ValueError(f"results.json key {key!r} has type {type(obj[key]).__name__}")
    if obj["status"] not in STATUSES:
        raise ValueError(f"status {obj['status']!r} is not one of {STATUSES}")
    if obj["status"] == "failed" and not obj.get("error"):
        raise ValueError("a failed study must say its error")
    for name, value in obj["metrics"].items():
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"metric {name!r} must be a number, got {type(value).__name__}")
    seen: set[str] = set()
    from ..stats import Claim

    for c in obj["claims"]:
        if not isinstance(c, dict) or "schema" not in c:
            raise ValueError(f"claim {c.get('id', '?') if isinstance(c, dict) else c!r} is not "
                             "a typed claim (no 'schema'): record claims with ctx.add(Claim)")
        try:
            Claim.from_json(c)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"claim {c.get('id', '?')!r}: {exc!r}") from None
        if c["verdict"] not in VERDICTS:
            raise ValueError(f"claim {c['id']!r}: verdict {c['verdict']!r} not in {VERDICTS}")
        if c["id"] in seen:
            raise ValueError(f"claim id {c['id']!r} appears twice")
        seen.add(c["id"])
    return obj


def contract_problem(obj: Any) -> str | None:
    """Why ``obj`` (a results.json read back) breaks the contract, as one line, or None when
    it follows it: :func:`validate_results` for readers that report a bad record instead of
    raising (the runner, ``--resume``, REPORT.md)."""
    try:
        validate_results(obj)
    except Exception as exc:  # any malformed record is a problem to report, whatever it raises
        return f"results.json does not follow the contract: {exc}"
    return None
