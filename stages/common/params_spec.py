"""The vocabulary of params_schema: ``knob(...)`` fields with their ``Spec`` (doc, range, choices), choices
read from a ``Registry``, and ``Section``, the base of every section class.

A section class (``params_schema.Train`` ...) is a frozen dataclass of ``knob`` fields, declared with
``@section``. What ``stages.common.params.load`` returns for a section is an instance of it: stages read
``p["train"].lora_r``, so a typo is an AttributeError (and a type-checker error), not a string key that
fails at run time. Its values are the merged params (shared section + the active profile's overlay),
checked against the declaration; a key absent from params.yaml is an error only when it is read, a
one-line error naming it (``params: missing train.lora_r``): each stage reads only some keys, and
tests write small params files.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UserError


@dataclass(frozen=True)
class Registry:
    """Choices read from the registry ``stages.<module>.<attribute>`` (dict keys, a tuple, or a callable's result).

    Read only where the module is already loaded (the stages that use a registry import it), never
    imported from here: loading params must not make every stage execute, or depend in dvc.yaml on,
    the retrieval or OCR code. ``load_registries()`` imports them all for the whole-file checks
    (``python -m stages.common.params``, tests) and the generated reference.
    """

    module: str  # under stages., e.g. "common.retrieval"
    attribute: str

    def names(self) -> tuple[str, ...] | None:
        """The registered names, or None where the registry's module is not loaded in this process."""
        module = sys.modules.get(f"stages.{self.module}")
        if module is None:
            return None
        value = getattr(module, self.attribute)
        return tuple(value() if callable(value) else value)


@dataclass(frozen=True)
class Spec:
    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | Registry | None = None

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices.names() if isinstance(self.choices, Registry) else self.choices

    def range_text(self) -> str:
        """``>= 1``, ``[0, 1]``, ``[0, 1)``, ``one of a, b``, or '' (only the type is checked)."""
        if self.choices is not None:
            allowed = self.allowed()
            return "one of " + ", ".join(allowed) if allowed is not None else f"a name in {self.choices.module}"
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            return (
                f"{'[' if self.ge is not None else '('}{_num(low)}, {_num(high)}{']' if self.le is not None else ')'}"
            )
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {_num(low)}"
        return f"{'<=' if self.le is not None else '<'} {_num(high)}" if high is not None else ""

    def violates(self, value: Any) -> bool:
        if self.choices is not None:
            allowed = self.allowed()
            return allowed is not None and value not in allowed
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False  # a range applies to numbers only (the type is checked first)
        return (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def knob(
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | Registry | None = None,
) -> Any:
    return dataclasses.field(metadata={"spec": Spec(doc, ge, gt, le, lt, choices)})


def fields(cls: type) -> dict[str, tuple[Any, Spec]]:
    """``{key: (type, Spec)}`` of a section class, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata["spec"]) for f in dataclasses.fields(cls)}


class Section(Mapping):
    """Base of the section classes: the checked values read as attributes, and a read-only mapping view.

    The mapping view (``dict(cfg)``, ``as_dict()``, ``{**cfg, key: value}``) is for code that genuinely
    needs a mapping: kwargs for a library, params recorded in an output, a test building a variant.
    Nested sections (``synthesize.split``, ``evaluate.judge``...) stay plain dicts.
    """

    @classmethod
    def of(cls, name: str, values: Mapping[str, Any]) -> Section:
        """An instance of section ``name`` holding ``values`` (checked by ``params.section``, not here)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "section_name", name)
        for key, value in values.items():
            object.__setattr__(obj, key, value)
        return obj

    def __getattr__(self, key: str) -> Any:  # called only for a name the instance does not hold
        if key in getattr(type(self), "__dataclass_fields__", {}):
            raise UserError(f"params: missing {vars(self).get('section_name', '?')}.{key}")
        raise AttributeError(f"{type(self).__name__} has no key {key!r}")

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise UserError(f"params: missing {vars(self).get('section_name', '?')}.{key}")
        return vars(self)[key]

    def __contains__(self, key: object) -> bool:
        return key != "section_name" and key in vars(self)

    def get(self, key: str, default: Any = None) -> Any:
        return vars(self)[key] if key in self else default

    def __iter__(self) -> Iterator[str]:
        return (k for k in vars(self) if k != "section_name")

    def __len__(self) -> int:
        return len(vars(self)) - 1

    def as_dict(self) -> dict[str, Any]:
        """The values as a plain dict, in params.yaml order."""
        return dict(self.items())

    def replace(self, **changes: Any) -> Section:
        """A copy with ``changes`` (unchecked): a variant of the section for one call."""
        return type(self).of(self.section_name, {**self.as_dict(), **changes})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"

    def __reduce__(self) -> Any:  # picklable for process pools
        return (type(self).of, (self.section_name, self.as_dict()))


def section(cls: type) -> type:
    """Declare a section class: a frozen dataclass of ``knob`` fields, instantiated by ``Section.of``."""
    return dataclass(frozen=True, repr=False, eq=False)(cls)
