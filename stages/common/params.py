"""params.yaml loading with machine profiles.

params.yaml holds two kinds of knobs:

* stage sections (``parse:``, ``train:`` ...): knobs shared by every machine,
  the ones users sweep with ``dvc exp run -S train.lora_r=32``;
* ``profiles.<name>.<section>``: knobs that depend on the machine (models,
  OCR engine, device, precision). ``profile:`` selects one.

A stage sees the union of its section and the selected profile's section.
A key may live in only one of the two places: if it lived in both, one of
them would silently shadow the other and ``-S`` on the shadowed key would do
nothing, so overlap is an error.

Every section a stage loads is checked against its declaration in
``params_schema.SECTIONS`` (in the shared section and in every profile): an unknown
key is an error that suggests the closest known one, a wrong type names the expected
type, a value out of its range or not one of its choices names the allowed ones.
The merged section is an instance of its declared class (a ``params_spec.Section``):
stages read its keys as attributes (``p["train"].lora_r``), and a key missing from
params.yaml is a one-line error naming it when read. Sections not in the schema yet
are not checked (a plain dict), so a stage under development can add one; ``check_all``
(``python -m stages.common.params``, and a test) checks the whole file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, run_cli
from .params_schema import SECTIONS, TOP_LEVEL, Section, Spec, fields, load_registries

DEFAULT_PARAMS = Path("params.yaml")


def load_raw(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found (run from the repository root)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def profile_name(raw: dict[str, Any]) -> str:
    name = raw.get("profile")
    profiles = raw.get("profiles") or {}
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise UserError(f"params: profile={name!r} is not defined under profiles: (known: {known})")
    return name


def section(raw: dict[str, Any], name: str) -> Any:
    """One params section, shared keys + the active profile's keys, checked: an instance of its declared class."""
    profile = profile_name(raw)
    shared = raw.get(name) or {}
    overlay = (raw["profiles"][profile] or {}).get(name) or {}
    if not isinstance(shared, dict) or not isinstance(overlay, dict):
        raise UserError(f"params: section {name!r} must be a mapping")
    if name in SECTIONS:
        check_keys(shared, SECTIONS[name], name)
        for other, sections in sorted(raw["profiles"].items()):
            extra = (sections or {}).get(name) if isinstance(sections, dict) else None
            if isinstance(extra, dict):  # every profile: a typo in runpod's keys shows up on cpu too
                check_keys(extra, SECTIONS[name], f"profiles.{other}.{name}")
    clash = sorted(set(shared) & set(overlay))
    if clash:
        raise UserError(
            f"params: {name}.{clash[0]} is set both in {name}: and in profiles.{profile}.{name}: "
            "- keep each key in one place"
        )
    merged = {**shared, **overlay}
    return SECTIONS[name].of(name, merged) if name in SECTIONS else merged


def make_section(name: str, values: dict[str, Any]) -> Section:
    """Section ``name`` holding ``values`` as they are (unchecked): for callers given a plain dict (tests)."""
    return values if isinstance(values, Section) else SECTIONS[name].of(name, values)


def load(path: str | Path = DEFAULT_PARAMS, *names: str) -> dict[str, Any]:
    """Return ``{"profile": name, section: its checked section object, ...}`` for the requested sections."""
    raw = load_raw(path)
    out: dict[str, Any] = {"profile": profile_name(raw)}
    for name in names:
        out[name] = section(raw, name)
    return out


def require(params: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Fetch a required key with a type check, naming the key in the error."""
    if key not in params:
        raise UserError(f"params: missing {where}.{key}")
    value = params[key]
    kinds = _as_tuple(kind)
    # bool is an int subclass: `lora_r: true` must not pass as an int.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(t.__name__ for t in kinds)
        raise UserError(f"params: {where}.{key} must be {names}, got {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# ---------------------------------------------------------------- schema checks


def check_keys(values: dict[str, Any], cls: type, where: str) -> None:
    """Every key of ``values`` must be a field of the section class ``cls``, with a value of its type and range."""
    known = fields(cls)
    for key, value in values.items():
        if key not in known:
            raise UserError(f"params: unknown key {where}.{key} {_suggest(str(key), known, where)}")
        kind, spec = known[key]
        check_value(value, kind, f"{where}.{key}", spec)


def check_value(value: Any, kind: Any, name: str, spec: Spec | None = None) -> None:
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise UserError(f"params: {name} must be a mapping, got {value!r}")
        check_keys(value, kind, name)
        return
    if not _matches(value, kind):
        raise UserError(f"params: {name} must be {_kind_name(kind)}, got {value!r}{_hint(value, kind)}")
    if spec is not None:
        for item in value if isinstance(value, list) else [value]:
            if spec.violates(item):
                raise UserError(f"params: {name} must be {spec.range_text()}, got {item!r}")


def check_all(raw: dict[str, Any]) -> int:
    """Check the whole file (every section, every profile, section names too); returns the number of keys."""
    profile_name(raw)
    n = 0
    for key, value in raw.items():
        if key in TOP_LEVEL:
            check_value(value, TOP_LEVEL[key], key)
        elif key in SECTIONS:
            n += _check_section(value, key, key)
        else:
            raise UserError(f"params: unknown section {key}: {_suggest(key, {**TOP_LEVEL, **SECTIONS}, '')}")
    for profile, sections in sorted(raw["profiles"].items()):
        where = f"profiles.{profile}"
        check_value(sections or {}, dict, where)
        for name, value in (sections or {}).items():
            if name not in SECTIONS:
                raise UserError(f"params: unknown section {where}.{name}: {_suggest(name, SECTIONS, where)}")
            n += _check_section(value, name, f"{where}.{name}")
        for name in SECTIONS:  # a key in both places is an error only for the active profile otherwise
            section({**raw, "profile": profile}, name)
    return n


def _check_section(value: Any, name: str, where: str) -> int:
    if value is None:
        return 0
    check_value(value, dict, where)
    check_keys(value, SECTIONS[name], where)
    return len(value)


def _matches(value: Any, kind: Any) -> bool:
    if isinstance(kind, tuple):
        return any(_matches(value, k) for k in kind)
    if kind is None:
        return value is None
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if isinstance(value, bool):  # bool is an int subclass: `lora_r: true` is not an int
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_kind_name(k) for k in kind)
    if kind is None:
        return "null"
    if typing.get_origin(kind) is list:
        return f"a list of {_kind_name(typing.get_args(kind)[0])}"
    return {dict: "a mapping", list: "a list", float: "float (a number)"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def _hint(value: Any, kind: Any) -> str:
    if not isinstance(value, str) or not any(_matches(n, kind) for n in (1, 1.5)):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    if "e" in value.lower() and "." not in value:
        return f" (YAML reads {value} as text: write it with a dot, e.g. {float(value)!r})"
    return " (a number in quotes is text: remove the quotes)"


def _suggest(key: str, known: dict[str, Any], where: str) -> str:
    prefix = f"{where}." if where else ""
    close = difflib.get_close_matches(key, [str(k) for k in known], n=1, cutoff=0.6)
    if close:
        return f"(did you mean {prefix}{close[0]}?)"
    return "(not in stages/common/params_schema.py, where every knob is registered)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m stages.common.params", description="Check params.yaml against the schema."
    )
    ap.add_argument("params", nargs="?", type=Path, default=DEFAULT_PARAMS)
    args = ap.parse_args(argv)
    load_registries()  # the whole file: registry choices (methods, engines...) too
    n = check_all(load_raw(args.params))
    print(f"{args.params}: ok ({n} keys checked)")


if __name__ == "__main__":
    run_cli(main)
