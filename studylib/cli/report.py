"""``REPORT.md``: one Markdown page per profile built from every study's ``results.json``.

``python -m studylib report --profile default`` reads ``outputs/default/*/results.json`` (the
contract in ``shared/DESIGN.md``) and writes ``outputs/default/REPORT.md`` with

- a summary table of the studies (status, claims reproduced, runtime, device);
- one table of every claim (study, claim id, verdict, its estimate and 95% CI exactly as the
  claim's ``estimate`` and ``ci95`` fields hold them, the rule, k of n seeds, the paper's own
  figure beside ours, seeds);
- a section per study: a one-line summary ("k of n claims reproduced; not reproduced: ...;
  inconclusive: ..."), a short paragraph of the claims' statements grouped by verdict with
  their estimates (:func:`study_paragraph`), the metrics, relative links to the rendered
  notebook (HTML and ipynb) and to each figure, and for a failed study its error.

Every results.json is checked against the contract (:func:`studylib.core.results.validate_results`)
before anything of it is shown: an unreadable or malformed one makes its study a failed study
whose error is the reason, and never stops the report. A study whose latest run failed while its
last good results were kept (``failed/`` beside them, see :mod:`studylib.cli.outputs`) is shown
as failed, with that run's error, and with the kept results below it.

The text is a pure function of the results files (no dates, studies and figures sorted), so a
rerun that reproduces the same numbers gives the same file apart from the runtimes.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core import paths
from ..core.formatting import fmt
from ..core.io import atomic_write_text, read_json_object, replace_between_markers
from ..stats import Claim
from .parameters import NAME_RE, ValidationError, fmt_list

REPORT_NAME = "REPORT.md"
VERDICT_ORDER = ("reproduced", "not reproduced", "inconclusive")


# ----------------------------------------------------------------------------- formatting


def fmt_number(x: Any) -> str:
    """A number for the report: :func:`studylib.core.formatting.fmt` (3 significant digits)
    for floats, ints as they are, None/NaN as ``n/a``."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return fmt(x)


def _is_number(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) or x is None


def md_escape(text: Any) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, newlines flattened)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def read_claim(obj: Any) -> Claim | None:
    """A results.json claim as a :class:`~studylib.stats.Claim`, or None when it does not
    follow the claim schema (written by an older kit: the report says so and shows no
    number rather than guessing which number goes with which interval)."""
    try:
        return Claim.from_json(obj)
    except (KeyError, TypeError, ValueError):
        return None


def claim_evidence(claim: dict[str, Any]) -> str:
    """A claim's estimate and interval, exactly as its ``estimate`` and ``ci95`` fields hold
    them (one field pair), with the rule and how many seeds lie on the claimed side."""
    c = read_claim(claim)
    if c is None:
        return md_escape(f"(no typed evidence: schema {claim.get('schema', 'none')}; re-run "
                         "the study)") if isinstance(claim, dict) else ""
    text = (f"{fmt_number(c.estimate)} {fmt(list(c.ci95))} ({c.interval_method}); rule: "
            f"{c.rule.describe()}; {c.k_of_n} on the claimed side")
    if c.verdict == "inconclusive" and c.power:
        text += f"; power: {c.power}"
    if c.excluded:
        text += "; left out: " + "; ".join(f"{e['condition']} ({e['reason']})"
                                           for e in c.excluded)
    return md_escape(text)


def claim_paper_value(claim: dict[str, Any]) -> str:
    """The paper's own figure beside ours ("> 93% correlation (abstract)"), or "qualitative"."""
    c = read_claim(claim)
    if c is None or c.paper_value is None:
        return "qualitative" if c is not None else ""
    return md_escape(f"{c.paper_value.value} ({c.paper_value.where})")


def claim_n_seeds(claim: dict[str, Any], results: dict[str, Any]) -> str:
    """``n_seeds`` of a typed claim, else the number of the study's seeds."""
    c = read_claim(claim)
    if c is not None:
        return str(c.n_seeds)
    seeds = results.get("seeds")
    return str(len(seeds)) if isinstance(seeds, list) and seeds else ""


def claims_paragraph(claims: list[dict[str, Any]]) -> str:
    """"k of n claims reproduced; not reproduced: a, b; inconclusive: c." (or "No claims...")."""
    if not claims:
        return "No claims were recorded."
    by = {v: [c.get("id", "?") for c in claims if c.get("verdict") == v] for v in VERDICT_ORDER}
    text = f"{len(by['reproduced'])} of {len(claims)} claims reproduced"
    if by["not reproduced"]:
        text += "; not reproduced: " + ", ".join(f"`{i}`" for i in by["not reproduced"])
    if by["inconclusive"]:
        text += "; inconclusive: " + ", ".join(f"`{i}`" for i in by["inconclusive"])
    return text + "."


def study_paragraph(claims: list[dict[str, Any]]) -> str:
    """A short paragraph of what reproduced and what did not, in the claims' own words.

    The statements are grouped by verdict, each followed by its estimate and 95% CI, so a reader learns what was tested and how
    far from the threshold it landed without opening the notebook. Generated from the
    results, so it cannot drift from the numbers.
    """
    if not claims:
        return ""
    labels = {"reproduced": "Reproduced", "not reproduced": "Not reproduced",
              "inconclusive": "Inconclusive (the 95% CI straddles the threshold, or too few "
                              "seeds for an interval)"}
    parts = []
    for verdict in VERDICT_ORDER:
        group = [c for c in claims if c.get("verdict") == verdict]
        if not group:
            continue
        items = []
        for c in group:
            statement = str(c.get("statement", "")).strip().rstrip(".")
            c_typed = read_claim(c)
            shown = (f"{fmt_number(c_typed.estimate)} {fmt(list(c_typed.ci95))}"
                     if c_typed is not None else "")
            items.append(md_escape(statement) + (f" ({shown})" if shown else ""))
        parts.append(f"**{labels[verdict]}:** " + "; ".join(items) + ".")
    return " ".join(parts)


# ----------------------------------------------------------------------------- collecting


@dataclass
class StudyEntry:
    """One study folder of a profile, as the report shows it.

    Attributes:
        study: the folder's name (the study id).
        folder: the folder.
        results: its results.json when readable and valid (lenient mode: readable), else None.
        problem: why results.json is not shown (unreadable, or breaks the contract); the
            study then counts as failed with this reason.
        failed_run: ``failed/results.json`` when the latest run failed and the last good
            results were kept beside it.
    """

    study: str
    folder: Path
    results: dict[str, Any] | None
    problem: str | None = None
    failed_run: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """``ok``, ``failed`` or ``unfinished`` (a notebook but no results.json)."""
        if self.problem or self.failed_run is not None:
            return "failed"
        if self.results is None:
            return "unfinished"
        return "ok" if self.results.get("status") == "ok" else "failed"

    @property
    def error(self) -> str:
        if self.problem:
            return self.problem
        if self.failed_run is not None:
            return str(self.failed_run.get("error", "unknown error"))
        return str((self.results or {}).get("error", "unknown error"))

    @property
    def claims(self) -> list[dict[str, Any]]:
        claims = (self.results or {}).get("claims")
        return [c for c in claims if isinstance(c, dict)] if isinstance(claims, list) else []

    # the (study, folder, results) triple older callers unpack
    def __iter__(self):
        return iter((self.study, self.folder, self.results))


def _check(path: Path, strict: bool) -> tuple[dict[str, Any] | None, str | None]:
    """(results, problem) of one results.json."""
    from ..core.results import contract_problem

    if not path.exists():
        return None, None
    obj = read_json_object(path)
    if obj is None:
        return None, "results.json is unreadable or not a JSON object"
    problem = contract_problem(obj) if strict else None
    return (None, problem) if problem else (obj, None)


def collect(profile_dir: str | os.PathLike, *, strict: bool = True) -> list[StudyEntry]:
    """A :class:`StudyEntry` for every study folder under ``profile_dir``, sorted.

    A folder counts as a study's when it holds ``results.json`` or ``<name>.ipynb``; folders
    starting with ``.`` (staging) are skipped. ``strict`` (REPORT.md) validates each
    results.json against the contract; ``strict=False`` (the README headline) only needs it
    to be a readable JSON object.
    """
    profile_dir = Path(profile_dir)
    found: list[StudyEntry] = []
    if not profile_dir.is_dir():
        return found
    for d in sorted(p for p in profile_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        res_path = d / "results.json"
        if not (res_path.exists() or (d / f"{d.name}.ipynb").exists()):
            continue
        results, problem = _check(res_path, strict)
        failed_run = None
        if results is not None and (d / "failed" / "results.json").exists():
            failed_run = read_json_object(d / "failed" / "results.json") or {
                "error": "the latest run failed (its record in failed/ is unreadable)"}
        found.append(StudyEntry(d.name, d, results, problem, failed_run))
    return found


def _figures(study_dir: Path, results: dict[str, Any] | None) -> list[Path]:
    figs = sorted((study_dir / "figures").glob("*.png")) if (study_dir / "figures").is_dir() \
        else []
    return figs


# ----------------------------------------------------------------------------- building


def build_report(profile: str, output_root: str | os.PathLike | None = None) -> str:
    """The Markdown text of ``<output_root>/<profile>/REPORT.md`` (see the module docstring)."""
    root = paths.resolve(output_root or paths.OUTPUTS_DIR)
    profile_dir = root / profile
    entries = collect(profile_dir)
    lines: list[str] = [
        f"# Report: profile `{profile}`",
        "",
        f"Written by `python -m studylib report --profile {profile}` from the `results.json` "
        "that each study wrote into its folder here. Every verdict was computed by the "
        "study's claim functions (`studylib/studies/`) from the measured numbers: *reproduced* "
        "when the whole 95% confidence interval (on the quantity's natural scale) lies on the "
        "claimed side of the rule's threshold in every informative condition, *not "
        "reproduced* when it lies wholly on the other side in one, *inconclusive* when it "
        "straddles the threshold (or could not be computed). Apart from runtimes, this file changes "
        "only when the results do.",
        "",
    ]
    if not entries:
        lines += [f"No study results under `{profile}/` yet: run "
                  f"`python -m studylib run --profile {profile}`.", ""]
        return "\n".join(lines)

    counts = {v: 0 for v in VERDICT_ORDER}
    n_claims = 0
    n_ok = n_failed = 0
    for e in entries:
        if e.status == "ok":
            n_ok += 1
        else:
            n_failed += 1
        for c in e.claims:
            n_claims += 1
            if c.get("verdict") in counts:
                counts[c["verdict"]] += 1
    lines += [
        "## Summary",
        "",
        f"{len(entries)} studies: {n_ok} ok, {n_failed} failed or unfinished. "
        f"{n_claims} claim{'' if n_claims == 1 else 's'}: {counts['reproduced']} reproduced, "
        f"{counts['not reproduced']} not reproduced, {counts['inconclusive']} inconclusive.",
        "",
        "| study | status | claims reproduced | runtime | device |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        res = e.results or {}
        claims = e.claims
        n_rep = sum(c.get("verdict") == "reproduced" for c in claims)
        runtime = res.get("runtime_s")
        status = e.status + (" (last good results kept)" if e.failed_run is not None else "")
        lines.append(
            f"| [{md_escape(e.study)}](#{_anchor(e.study)}) | {md_escape(status)} "
            f"| {n_rep}/{len(claims)} "
            f"| {f'{float(runtime):.1f} s' if _is_number(runtime) and runtime is not None else ''} "
            f"| {md_escape(res.get('device', ''))} |")
    lines += [
        "",
        "## Claims",
        "",
        "| study | claim | verdict | estimate [95% CI]; rule; seeds | paper | n_seeds |",
        "|---|---|---|---|---|---|",
    ]
    any_claim = False
    for e in entries:
        for c in e.claims:
            any_claim = True
            lines.append(
                f"| {md_escape(e.study)} | `{md_escape(c.get('id', '?'))}` "
                f"| {md_escape(c.get('verdict', '?'))} "
                f"| {claim_evidence(c)} "
                f"| {claim_paper_value(c)} "
                f"| {claim_n_seeds(c, e.results or {})} |")
    if not any_claim:
        lines.append("| | | | (no claims recorded) | | |")
    lines += ["", "## Studies", ""]
    for e in entries:
        lines += _study_section(e, profile_dir)
    return "\n".join(lines).rstrip() + "\n"


FINDINGS_NAME = "findings.yaml"


def findings(profile_dir: Path) -> dict[str, str]:
    """``<profile>/findings.yaml``: study -> one paragraph, written by whoever ran the profile
    and read its results, saying what reproduced, what did not and why (REPORT.md shows it in
    the study's section). Missing file: no paragraphs. Not a mapping of strings: an error."""
    import yaml

    f = profile_dir / FINDINGS_NAME
    if not f.exists():
        return {}
    data = yaml.safe_load(f.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in data.items()):
        raise ValueError(f"{f}: expected a mapping of study -> paragraph (strings)")
    return data


def _anchor(study: str) -> str:
    """GitHub's heading anchor for ``### <study>`` (lowercase, spaces to dashes)."""
    return re.sub(r"[^a-z0-9_\- ]", "", study.lower()).replace(" ", "-")


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _study_section(entry: StudyEntry, profile_dir: Path) -> list[str]:
    study, d, res = entry.study, entry.folder, entry.results
    lines = [f"### {study}", ""]
    if entry.problem:
        lines += [f"**Failed**: `{md_escape(entry.problem)}`", ""]
    elif res is None:
        lines += ["**Unfinished**: the folder has no readable `results.json` (the run was "
                  "interrupted before the study finished).", ""]
    else:
        status = res.get("status", "?")
        runtime = res.get("runtime_s")
        facts = [f"status: **{md_escape(entry.status)}**"]
        if _is_number(runtime) and runtime is not None:
            facts.append(f"runtime: {float(runtime):.1f} s")
        facts.append(f"device: {md_escape(res.get('device', '?'))}")
        env = res.get("environment") if isinstance(res.get("environment"), dict) else {}
        if env.get("gpu"):
            facts.append(f"GPU: {md_escape(env['gpu'])}")
        seeds = res.get("seeds")
        if isinstance(seeds, list):
            facts.append(f"seeds: {', '.join(str(s) for s in seeds) or '(none)'}")
        lines += ["- " + "; ".join(facts), ""]
        if entry.failed_run is not None:
            failed_dir = d / "failed"
            lines += [f"**Failed** (latest run): `{md_escape(entry.error)}`. The results below "
                      f"are the last good run's, kept; the failed run's record and partial "
                      f"notebook are in [failed/]({_rel(failed_dir, profile_dir)}/).", ""]
        elif status != "ok":
            lines += [f"**Failed**: `{md_escape(res.get('error', 'unknown error'))}`", ""]
        claims = entry.claims
        lines += [claims_paragraph(claims), ""]
        finding = findings(profile_dir).get(study)
        if finding:
            lines += [f"**What it means.** {finding.strip()}", ""]
        paragraph = study_paragraph(claims)
        if paragraph:
            lines += [paragraph, ""]
        metrics = res.get("metrics") if isinstance(res.get("metrics"), dict) else {}
        if metrics:
            lines += ["| metric | value |", "|---|---|"]
            for name in sorted(metrics):
                lines.append(f"| {md_escape(name)} | {fmt_number(metrics[name])} |")
            lines.append("")
    links = []
    for ext, label in ((".html", "notebook (HTML)"), (".ipynb", "notebook (ipynb)")):
        f = d / f"{study}{ext}"
        if f.exists():
            links.append(f"[{label}]({_rel(f, profile_dir)})")
    if (d / "results.json").exists():
        links.append(f"[results.json]({_rel(d / 'results.json', profile_dir)})")
    if links:
        lines += ["Files: " + " · ".join(links), ""]
    figs = _figures(d, res)
    if figs:
        lines += ["Figures: " + " · ".join(f"[{f.stem}]({_rel(f, profile_dir)})" for f in figs),
                  ""]
    return lines


def check_profile_name(profile: str, valid: list[str] | None = None) -> str:
    """``profile`` if it is a plain name (letters, digits, ``_ . -``; no path) and, when
    ``valid`` is given, one of them; else ValidationError listing the valid ones."""
    shown = fmt_list(valid) if valid is not None else "letters, digits, _ . - only"
    if not isinstance(profile, str) or not NAME_RE.match(profile) or ".." in profile:
        raise ValidationError(f"invalid profile name {profile!r}; valid profiles: {shown}")
    if valid is not None and profile not in valid:
        raise ValidationError(f"unknown profile {profile!r}; valid profiles: {shown}")
    return profile


def write_report(profile: str, output_root: str | os.PathLike | None = None) -> Path:
    """Write ``<output_root>/<profile>/REPORT.md`` atomically and return its path.

    Raises:
        ValidationError: ``profile`` is not a plain name (it could point outside the root).
    """
    check_profile_name(profile)
    root = paths.resolve(output_root or paths.OUTPUTS_DIR)
    return atomic_write_text(root / profile / REPORT_NAME, build_report(profile, root))


def valid_profiles(output_root: Path, notebooks_dir: str | os.PathLike | None = None,
                   params_dir: str | os.PathLike | None = None) -> list[str]:
    """Profile names ``report`` accepts: every profile a study has (``params/``) and every
    folder under ``output_root`` with a plain name that holds a study's results."""
    from .runner import Runner

    names = set(Runner(notebooks_dir=notebooks_dir, params_dir=params_dir,
                       log=None).all_profiles())
    if output_root.is_dir():
        names |= {d.name for d in output_root.iterdir()
                  if d.is_dir() and NAME_RE.match(d.name) and collect(d, strict=False)}
    return sorted(names)


def cmd_report(args) -> int:
    root = paths.resolve(args.output_root or paths.OUTPUTS_DIR)
    check_profile_name(args.profile, valid_profiles(root, getattr(args, "notebooks_dir", None),
                                                    getattr(args, "params_dir", None)))
    path = write_report(args.profile, root)
    if getattr(args, "readme", False):
        update_readme(paths.REPO_ROOT / "README.md", args.profile, args.output_root)
    try:
        shown = path.relative_to(paths.REPO_ROOT).as_posix()
    except ValueError:
        shown = str(path)
    print(f"report: {shown}", file=sys.stdout)
    failed = [e.study for e in collect(root / args.profile) if e.status != "ok"]
    if failed:
        print(f"failed or unfinished: {', '.join(failed)}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- README headline

HEADLINE_START = "<!-- headline:start (written by `python -m studylib report --readme`) -->"
HEADLINE_END = "<!-- headline:end -->"


def headline_markdown(profile: str, output_root: str | os.PathLike | None = None) -> str:
    """One line per study: its verdict counts at ``profile``, from the results.json files;
    then the run's total study time."""
    root = paths.resolve(output_root or paths.OUTPUTS_DIR)
    studies = collect(root / profile, strict=False)
    lines = [f"Verdicts at the `{profile}` profile (from [`REPORT.md`](outputs/{profile}/"
             f"{REPORT_NAME})):", "", "| study | status | verdicts |", "|---|---|---|"]
    for e in studies:
        if e.results is None:
            lines.append(f"| `{e.study}` | no results | - |")
            continue
        text = claims_paragraph(e.claims) if e.status == "ok" else \
            md_escape(e.error[:120])
        lines.append(f"| `{e.study}` | {e.status} | {text} |")
    found = [e.results for e in studies if e.results is not None]
    runtimes = [float(r["runtime_s"]) for r in found if _is_number(r.get("runtime_s"))
                and r.get("runtime_s") is not None]
    if runtimes:
        devices = ", ".join(sorted({str(r.get("device", "?")) for r in found}))
        seconds, at_once = study_time([e.folder for e in studies if e.results is not None],
                                      runtimes)
        if at_once > 1:
            lines += ["", f"Study time of that run: {seconds / 60:.1f} min wall clock for "
                          f"{len(runtimes)} studies, up to {at_once} at a time "
                          f"({sum(runtimes) / 60:.1f} min summed over the studies; device: "
                          f"{devices}; set-up excluded)."]
        else:
            lines += ["", f"Study time of that run: {sum(runtimes) / 60:.1f} min for "
                          f"{len(runtimes)} studies (device: {devices}; set-up excluded)."]
    return "\n".join(lines)


def study_time(folders: list[Path], runtimes: list[float]) -> tuple[float, int]:
    """How long the studies in ``folders`` took: (the wall clock of their run.json spans, the
    most that ran at once) when they overlapped, else (the sum of ``runtimes``, 1). The sum is
    also the answer when a folder lacks its span or ``runtimes`` does not cover every folder,
    so a study is never left out of the time."""
    spans = [_run_span(folder) for folder in folders]
    if len(spans) == len(runtimes) and None not in spans:
        seconds, at_once = wall_clock(spans)
        if at_once > 1:
            return seconds, at_once
    return float(sum(runtimes)), 1


def _run_span(folder: Path) -> tuple[datetime, datetime] | None:
    """(started, finished) from a study folder's run.json, or None when either is missing or
    unreadable."""
    rec = read_json_object(folder / "run.json")
    try:
        start = datetime.fromisoformat(str(rec["started"]))
        end = datetime.fromisoformat(str(rec["finished"]))
    except (TypeError, KeyError, ValueError):
        return None
    return (start, end) if end >= start else None


def wall_clock(spans: list[tuple[datetime, datetime]]) -> tuple[float, int]:
    """(seconds during which at least one span was running, the most spans running at once).

    Studies run N at a time (``run --jobs N``) overlap, so the sum of their runtimes is not
    the time the run took; studies of separate runs kept in one folder do not overlap, and
    the gaps between those runs are not counted.
    """
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same second
    busy, running, most, since = 0.0, 0, 0, None
    for when, step in events:
        if running == 0 and step == 1:
            since = when
        running += step
        most = max(most, running)
        if running == 0 and since is not None:
            busy += (when - since).total_seconds()
    return busy, most


def update_readme(readme: str | os.PathLike, profile: str,
                  output_root: str | os.PathLike | None = None) -> Path:
    """Replace the text between the headline markers of ``readme`` (atomically)."""
    return replace_between_markers(readme, HEADLINE_START, HEADLINE_END,
                                   headline_markdown(profile, output_root))
