"""A study's parameters: names, types and value constraints read from its ``parameters`` cell,
and the YAML readers for profiles, sweeps and ``--set`` values.

The notebook's ``parameters`` cell is the single source of truth for names, types and defaults.
Beside each parameter's type, :func:`derive_constraints` keeps the rules its values must satisfy,
derived from what the cell already says, so that a bad value stops the run before anything
executes (exit 2) instead of failing inside a kernel minutes later:

- by name: ``seeds`` (and ``*_seeds``) a non-empty list of integers >= 0, ``seed`` / ``*_seed``
  an integer >= 0; counts (``n``, ``n_*``, ``*_n``, ``num_*``, ``*_epochs``, ``*_steps``,
  ``*_samples``, ``*_size`` ... see :data:`COUNT_WORDS`) integers >= 1, also element-wise in
  a list of integers;
  probabilities and fractions (``*prob*``, ``*fraction*``, ``*share*``, ``dropout*``,
  ``momentum``, ``*alpha*``, ``conf``, ``*_p``, ``*auc*``) in [0, 1]; rank-correlation
  thresholds (``*rho*``, ``*tau*``) in [-1, 1]; data-set names (``dataset``, ``*_dataset``,
  ``datasets``, ``*_datasets``, and a ``dataset`` key inside a mapping) one of
  ``studylib.data.available()``;
- by default: a list whose default holds only integers (numbers, strings) holds only integers
  (numbers, strings); every float is finite;
- by comment: a comment listing the choices as ``a | b | c`` (after an optional ``label:``)
  restricts a string to those choices, when the default is one of them.

``device`` is checked on its own: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import math
import os
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Parameters the runner injects itself; profiles and ``--set`` may not name them
#: (``device`` has its own ``--device`` option and may also be given in a profile YAML).
INJECTED = ("profile", "output_dir")
DEVICES = ("auto", "cpu", "cuda")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Types a parameter may have, by the name ``type(default).__name__`` gives for its default.
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list,
               "dict": dict, "tuple": tuple}

#: Name parts that make an integer parameter (or a list of them) a count, which must be >= 1.
COUNT_WORDS = ("epochs", "steps", "samples", "points", "repeats", "repetitions", "restarts",
               "batches", "batch", "size", "images", "warmup", "leapfrog", "width", "hidden",
               "channels", "grid", "boot", "frequency", "per_step", "pool", "factor", "train",
               "test", "eval", "examples", "values")
_PROBABILITY_WORDS = ("prob", "fraction", "share", "dropout", "momentum", "alpha", "auc")
_PROBABILITY_NAMES = ("conf", "p")
_CORRELATION_WORDS = ("rho", "tau")


class ValidationError(ValueError):
    """A profile, study, parameter name or value is not valid (the CLI exits with code 2)."""


def check_device(value: Any, source: str = "--device") -> str:
    """``value`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, else ValidationError."""
    if not isinstance(value, str) or not _DEVICE_RE.match(value):
        raise ValidationError(f"{source}: device {value!r} is not one of auto, cpu, cuda, "
                              f"cuda:N (N a GPU index, e.g. cuda:1)")
    return value


# ----------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Constraint:
    """One rule a parameter's value must satisfy, beside its type.

    Attributes:
        description: the rule in words, for messages (``"integers >= 1"``).
        test: ``test(value) -> bool``, applied to the value, or to each element of a list
            value when ``each`` is set.
        each: apply ``test`` to every element of a list (an empty list passes).
        origin: where the rule comes from (``"name"``, ``"default"``, ``"comment"``).
    """

    description: str
    test: Callable[[Any], bool]
    each: bool = False
    origin: str = "name"

    def holds(self, value: Any) -> bool:
        try:
            if self.each:
                return isinstance(value, (list, tuple)) and all(self.test(v) for v in value)
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _words(name: str) -> list[str]:
    return name.lower().split("_")


def _is_count_name(name: str) -> bool:
    """``n``, ``n_*``, ``*_n_*``, ``num_*`` or a name with a word of :data:`COUNT_WORDS`
    (singular or plural, ``per_step`` as one word)."""
    words = _words(name)
    if "n" in words or "num" in words:
        return True
    joined = "_" + name.lower() + "_"
    return any(w in words or w + "s" in words or ("_" in w and f"_{w}_" in joined)
               for w in COUNT_WORDS)


def _comment_choices(comment: str, default: Any) -> list[str] | None:
    """``["a", "b", "c"]`` from a comment ``[label:] a (...) | b | c (...)``, when the default
    is one of them; else None."""
    text = comment.split(":", 1)[1] if ":" in comment.split("|", 1)[0] else comment
    if "|" not in text:
        return None
    choices = []
    for part in text.split("|"):
        token = part.strip().split()[0].strip("\"'`,;.") if part.strip() else ""
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", token):
            return None
        choices.append(token)
    return choices if default in choices else None


def _dataset_names() -> list[str]:
    from ..data import available

    return list(available())


def _known_dataset(v: Any) -> bool:
    return isinstance(v, str) and v in _dataset_names()


def _nested_datasets_known(v: Any) -> bool:
    """Every ``"dataset": name`` inside a mapping (at any depth) names a known data set."""
    if isinstance(v, dict):
        for key, item in v.items():
            if key == "dataset" and isinstance(item, str) and not _known_dataset(item):
                return False
            if not _nested_datasets_known(item):
                return False
    elif isinstance(v, (list, tuple)):
        return all(_nested_datasets_known(item) for item in v)
    return True


def _mentions_dataset(v: Any) -> bool:
    if isinstance(v, dict):
        return "dataset" in v or any(_mentions_dataset(i) for i in v.values())
    if isinstance(v, (list, tuple)):
        return any(_mentions_dataset(i) for i in v)
    return False


def derive_constraints(name: str, type_name: str, default: Any, comment: str = ""
                       ) -> tuple[Constraint, ...]:
    """The value constraints of one parameter (see the module docstring for the rules).

    Derived only where the default itself satisfies the rule, so a rule can never reject the
    notebook's own value.
    """
    out: list[Constraint] = []
    words = _words(name)
    is_list = type_name in ("list", "tuple") and isinstance(default, (list, tuple))

    if name == "seeds" or name.endswith("_seeds"):
        out.append(Constraint("a non-empty list", lambda v: isinstance(v, (list, tuple))
                              and len(v) > 0))
        out.append(Constraint("integers >= 0", lambda v: _is_int(v) and v >= 0, each=True))
    elif type_name == "int" and (name == "seed" or name.endswith("_seed")):
        out.append(Constraint("an integer >= 0", lambda v: v >= 0))
    elif type_name == "int" and _is_count_name(name):
        out.append(Constraint("a count >= 1", lambda v: v >= 1))
    elif is_list and _is_count_name(name) and default and all(_is_int(v) for v in default):
        out.append(Constraint("counts >= 1", lambda v: _is_int(v) and v >= 1, each=True))

    if name in ("dataset", "datasets") or name.endswith(("_dataset", "_datasets")):
        names_hint = "a data set name of studylib.data.available()"
        if type_name == "str":
            out.append(Constraint(names_hint, _known_dataset))
        elif is_list:
            out.append(Constraint(names_hint + " each", _known_dataset, each=True))
    elif type_name == "dict" and _mentions_dataset(default):
        out.append(Constraint("every 'dataset' key a name of studylib.data.available()",
                              _nested_datasets_known, origin="default"))

    in_unit = any(part.startswith(w) for part in words for w in _PROBABILITY_WORDS) or \
        words[-1] in _PROBABILITY_NAMES
    in_corr = any(part.startswith(w) for part in words for w in _CORRELATION_WORDS)
    for lo, hi, applies in ((0.0, 1.0, in_unit), (-1.0, 1.0, in_corr and not in_unit)):
        if not applies:
            continue
        if type_name in ("float", "int"):
            out.append(Constraint(f"in [{lo:g}, {hi:g}]",
                                  lambda v, lo=lo, hi=hi: _is_number(v) and lo <= v <= hi))
        elif is_list and default and all(_is_number(v) for v in default):
            out.append(Constraint(f"numbers in [{lo:g}, {hi:g}]",
                                  lambda v, lo=lo, hi=hi: _is_number(v) and lo <= v <= hi,
                                  each=True))

    if type_name == "float":
        out.append(Constraint("a finite number", _finite, origin="type"))
    if is_list and default and not (name == "seeds" or name.endswith("_seeds")):
        if all(_is_int(v) for v in default):
            out.append(Constraint("integers", _is_int, each=True, origin="default"))
        elif all(_is_number(v) for v in default):
            out.append(Constraint("finite numbers", _finite, each=True, origin="default"))
        elif all(isinstance(v, str) for v in default):
            out.append(Constraint("strings", lambda v: isinstance(v, str), each=True,
                                  origin="default"))
        elif all(isinstance(v, (list, tuple)) for v in default):
            out.append(Constraint("lists", lambda v: isinstance(v, (list, tuple)), each=True,
                                  origin="default"))

    if type_name == "str" and name != "device" and name not in INJECTED:
        choices = _comment_choices(comment, default)
        if choices:
            out.append(Constraint("one of " + ", ".join(choices),
                                  lambda v, c=tuple(choices): v in c, origin="comment"))
    return tuple(c for c in out if c.holds(default))


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell.

    Attributes:
        name: the variable name.
        type_name: ``"int" | "float" | "str" | "bool" | "list" | "dict" | "None" | "any"``:
            the annotation if the cell has one, else the type of the literal default
            (``"None"``: the default is ``None``, any value is accepted; ``"any"``: the default
            is not a literal, so its type cannot be inferred and any value is accepted).
        default: the default value (the literal, evaluated), or ``None`` if not a literal.
        default_source: the default as written in the cell.
        help: the trailing ``# comment`` of the line, if any.
        constraints: the value rules beside the type (:func:`derive_constraints`).
    """

    name: str
    type_name: str
    default: Any
    default_source: str
    help: str = ""
    constraints: tuple[Constraint, ...] = ()

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has this parameter's type (an int is accepted for a float)."""
        if self.type_name in ("None", "any"):
            return True
        expected = _TYPE_NAMES.get(self.type_name)
        if expected is None:  # an annotation we do not model (e.g. "list[int]"): accept
            return True
        if expected is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if expected is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if expected in (list, tuple):
            return isinstance(value, (list, tuple))
        return isinstance(value, expected)

    def violations(self, value: Any) -> list[str]:
        """Descriptions of the constraints ``value`` breaks (empty: it satisfies them all)."""
        return [c.description for c in self.constraints if not c.holds(value)]

    def rule(self) -> str:
        """The type and the constraints in words: ``"list (a non-empty list; integers >= 0)"``."""
        extra = "; ".join(c.description for c in self.constraints)
        return f"{self.type_name} ({extra})" if extra else self.type_name


def _literal(source: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def find_parameters_cell(nb: dict) -> dict | None:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
                "tags", []):
            return cell
    return None


def _line_comments(source: str) -> dict[int, str]:
    """Line number -> text of the ``# comment`` on that line (without the ``#``)."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


def _ast_assignments(source: str) -> dict[str, tuple[str, str]]:
    """Top-level ``name = value`` assignments of a cell: name -> (value source, comment of
    its last line), in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    comments = _line_comments(source)
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and value is not None:
            out[target.id] = (ast.get_source_segment(source, value) or "",
                              comments.get(node.end_lineno or node.lineno, ""))
    return out


def read_parameters(notebook: str | os.PathLike) -> dict[str, Parameter]:
    """The parameters of ``notebook``'s ``parameters`` cell, by name, in cell order.

    Uses ``papermill.inspect_notebook`` (names, annotations, help comments); types are inferred
    from the literal defaults, since Papermill only knows a type when the cell annotates it.
    Assignments Papermill's line parser skips (e.g. a help comment containing ``=``) are
    recovered from the cell's syntax tree so no parameter goes unvalidated.

    Raises:
        ValidationError: the notebook has no cell tagged ``parameters``.
    """
    import papermill

    notebook = Path(notebook)
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cell = find_parameters_cell(nb)
    if cell is None:
        raise ValidationError(f"{notebook} has no code cell tagged 'parameters'")
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    # papermill's line parser warns about (and skips) lines with a second "=" in a comment;
    # those are recovered below, so its warning is only noise here.
    pm_log = logging.getLogger("papermill")
    level = pm_log.level
    pm_log.setLevel(logging.ERROR)
    try:
        inspected = papermill.inspect_notebook(str(notebook))
    finally:
        pm_log.setLevel(level)
    from_ast = _ast_assignments(source)
    params: dict[str, Parameter] = {}
    for name in list(inspected) + [n for n in from_ast if n not in inspected]:
        info = dict(inspected.get(name, {}))
        if name in from_ast and not info.get("help"):
            info["help"] = from_ast[name][1]
        default_source = from_ast[name][0] if name in from_ast else info.get("default", "")
        ok, default = _literal(default_source)
        annotation = info.get("inferred_type_name", "None")
        if annotation and annotation != "None":
            type_name = annotation
        elif ok:
            type_name = "None" if default is None else type(default).__name__
        else:
            type_name = "any"
        help_text = info.get("help", "") or ""
        constraints = derive_constraints(name, type_name, default, help_text) if ok else ()
        params[name] = Parameter(name=name, type_name=type_name, default=default if ok else None,
                                 default_source=default_source, help=help_text,
                                 constraints=constraints)
    return params


def notebook_title(notebook: str | os.PathLike) -> str:
    """The first markdown cell's title line (leading ``#`` removed), or ``""``."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for line in src.splitlines():
            if line.strip():
                return line.strip().lstrip("#").strip()
        return ""
    return ""


# ----------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming the same key twice (PyYAML keeps the
    last one silently, so a duplicated parameter would win without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (lines {first} and {line}): a "
                        "parameter may be given once", key_node.start_mark)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def fix_yaml_floats(obj: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float is what a user means."""
    if isinstance(obj, str) and re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+", obj):
        return float(obj)
    if isinstance(obj, dict):
        return {k: fix_yaml_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fix_yaml_floats(v) for v in obj]
    return obj


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set key=value``; the value goes through ``yaml.safe_load``.

    ``"seeds=[0,1]"`` -> ``("seeds", [0, 1])``; ``"lr=1e-3"`` -> ``("lr", 0.001)``;
    ``"name=abc"`` -> ``("name", "abc")``; ``"flag=true"`` -> ``("flag", True)``.

    Raises:
        ValidationError: no ``=``, an empty key, or a value YAML cannot parse.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValidationError(f"--set {item!r}: expected key=value, e.g. --set seeds=[0,1]")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValidationError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
    return key, fix_yaml_floats(value)


def merge_override(base: Any, override: Any) -> Any:
    """An override applied to a value: a mapping merges into a mapping key by key (recursively,
    so ``{setup_a: {epochs: 1}}`` changes one key of one setup and keeps the rest); anything
    else replaces the value.

    >>> merge_override({"data_root": "m", "csv": "a.csv"}, {"csv": "b.csv"})
    {'data_root': 'm', 'csv': 'b.csv'}
    >>> merge_override([1, 2], [3])
    [3]
    """
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge_override(base[key], value) if key in base else value
        return merged
    return override


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping (an empty file is ``{}``).

    Duplicate keys are an error; exponent floats written without a dot (``1e-3``, which YAML
    1.1 reads as a string) are converted to floats.

    Raises:
        ValidationError: unreadable, not valid YAML, a duplicate key, or not a mapping.
    """
    path = Path(path)
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: not valid YAML ({exc})") from exc
    except OSError as exc:
        raise ValidationError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"{path}: expected a mapping of parameter: value, "
                              f"got {type(data).__name__}")
    return fix_yaml_floats(data)


def fmt_list(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "(none)"
