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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

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


def section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """Merged view of one params section: shared keys + the active profile's keys."""
    profile = profile_name(raw)
    shared = raw.get(name) or {}
    overlay = (raw["profiles"][profile] or {}).get(name) or {}
    if not isinstance(shared, dict) or not isinstance(overlay, dict):
        raise UserError(f"params: section {name!r} must be a mapping")
    clash = sorted(set(shared) & set(overlay))
    if clash:
        raise UserError(
            f"params: {name}.{clash[0]} is set both in {name}: and in profiles.{profile}.{name}: "
            "- keep each key in one place"
        )
    return {**shared, **overlay}


def load(path: str | Path = DEFAULT_PARAMS, *names: str) -> dict[str, dict[str, Any]]:
    """Return ``{"profile": name, section: merged, ...}`` for the requested sections."""
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
