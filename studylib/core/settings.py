"""Study settings read from a notebook's parameters.

The parameters cell of each notebook is the one source of the names, types and defaults of a
study's parameters (profiles in ``params/`` override them). A study's ``Settings`` is a frozen
dataclass whose fields carry no defaults: :meth:`StudySettings.from_params` fills every field
from those parameters, so no default is written twice and a field the parameters cell lacks is
an error that names it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T", bound="StudySettings")


def _tuples(value: Any) -> Any:
    """Nested lists as nested tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _coerce(value: Any, annotation: Any) -> Any:
    """Lists from a parameters cell (or YAML) become tuples, nested ones too (a grid of
    ``[patch, stride]`` pairs), where the field is a tuple, so settings are hashable and cannot
    be changed by accident."""
    origin = typing.get_origin(annotation)
    if (annotation is tuple or origin is tuple) and isinstance(value, list):
        return _tuples(value)
    return value


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """Base of every study's ``Settings``: subclass it as a frozen dataclass without defaults.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Settings(StudySettings):
        ...     epochs: int
        ...     eps_values: tuple[float, ...]
        >>> Settings.from_params({"epochs": 3, "eps_values": [0.1, 0.2], "profile": "smoke"})
        Settings(epochs=3, eps_values=(0.1, 0.2))
    """

    @classmethod
    def from_params(cls: type[T], params: Mapping[str, Any]) -> T:
        """Build the settings from a mapping of parameter names to values (the notebook's
        ``globals()`` or ``capture_parameters(globals())``); names that are not fields (such
        as ``profile`` or ``output_dir``) are ignored."""
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in params]
        if missing:
            raise KeyError(f"{cls.__module__}.{cls.__qualname__} needs the parameters "
                           f"{missing}, which the notebook's parameters cell does not define")
        hints = typing.get_type_hints(cls)
        return cls(**{f.name: _coerce(params[f.name], hints.get(f.name)) for f in fields})
