"""Valid ranges of the numeric config keys and the allowed values of some string keys, declared
once in ``harl/configs/ranges.yaml`` and checked, with the types, before a run creates anything."""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from harl.utils.errors import ConfigError
from harl.utils.files import load_yaml

RANGES_PATH = Path(__file__).resolve().parent.parent / "configs" / "ranges.yaml"

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_BOUND = re.compile(r"^(>=|>|<=|<)\s*(-?[0-9.]+(?:e[+-]?[0-9]+)?)$")
_CROSS = re.compile(r"^(\w+)\s*(>=|>|<=|<)\s*(\w+)$")


class Bound(NamedTuple):
    """``value <op> limit``."""

    op: str
    limit: float

    def holds(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.limit)


class Rules(NamedTuple):
    """The parsed ``ranges.yaml``: per-key bounds (with their text and whether the key takes
    integers only), key-pair relations and the allowed values of string keys."""

    keys: dict[str, tuple[str, list[Bound], bool]]
    cross: list[tuple[str, str, str]]
    choices: dict[str, tuple[str, ...]] = {}


def _parse_rule(key: str, text: str) -> tuple[list[Bound], bool]:
    integer = text.startswith("integer ")
    bounds = []
    for part in text.removeprefix("integer ").split(" and "):
        match = _BOUND.match(part.strip())
        if not match:
            raise ConfigError(f"{RANGES_PATH}: the rule of {key!r} ({text!r}) is not like '>= 1' or '> 0 and <= 1'")
        bounds.append(Bound(match.group(1), float(match.group(2))))
    return bounds, integer


@functools.lru_cache(maxsize=1)
def load_rules() -> Rules:
    """Parse ``ranges.yaml`` (once per process)."""

    data = load_yaml(RANGES_PATH, "ranges file")
    if not (isinstance(data, dict) and isinstance(data.get("keys"), dict) and isinstance(data.get("cross", []), list)):
        raise ConfigError(
            f"{RANGES_PATH}: must map 'keys' to a mapping of key: rule and 'cross' to a list of relations"
        )
    keys = {key: (str(text), *_parse_rule(key, str(text))) for key, text in data["keys"].items()}
    cross = []
    for text in data.get("cross") or []:
        match = _CROSS.match(str(text).strip())
        if not match:
            raise ConfigError(f"{RANGES_PATH}: the relation {text!r} is not like 'buffer_size >= batch_size'")
        cross.append((match.group(1), match.group(2), match.group(3)))
    choices = {key: tuple(str(v) for v in values) for key, values in (data.get("choices") or {}).items()}
    return Rules(keys, cross, choices)


def describe(key: str) -> str:
    """The valid range of ``key`` as written in ``ranges.yaml`` ("" when it has none)."""
    rules = load_rules()
    if key in rules.choices:
        return "one of " + ", ".join(rules.choices[key])
    rule = rules.keys.get(key)
    return rule[0] if rule else ""


def range_problems(flat: Mapping[str, Any]) -> list[str]:
    """One sentence per value of ``flat`` (leaf key -> value) outside its range or breaking a
    relation; empty when all are valid. Non-numeric values are left to the type checks, except
    for an "integer" rule, whose key has a null default (no type to check against) and takes
    null or an integer."""
    rules = load_rules()
    problems = []
    for key, value in flat.items():
        if key in rules.choices and value not in rules.choices[key]:
            problems.append(f"Config key '{key}' must be one of {', '.join(rules.choices[key])}, got {value!r}.")
        if key not in rules.keys:
            continue
        text, bounds, integer = rules.keys[key]
        if integer and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"Config key '{key}' must be null or an {text}, got {value!r}.")
            continue
        if isinstance(value, bool):
            continue

        def valid(number: Any) -> bool:
            return (
                isinstance(number, (int, float))
                and not isinstance(number, bool)
                and math.isfinite(number)
                and all(b.holds(number) for b in bounds)
            )

        if isinstance(value, list):
            if not value:
                problems.append(f"Config key '{key}' must not be empty (each item {text}).")
            elif not all(valid(v) for v in value):
                problems.append(f"Config key '{key}' needs every item {text}, got {value}.")
        elif isinstance(value, (int, float)) and not valid(value):
            problems.append(f"Config key '{key}' must be {text}, got {value}.")
    for left, op, right in rules.cross:
        if left in flat and right in flat and not _COMPARISONS[op](flat[left], flat[right]):
            problems.append(f"Config key '{left}' ({flat[left]}) must be {op} {right} ({flat[right]}).")
    return problems
