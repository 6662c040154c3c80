"""The scenario file's JSON Schema (harness/schema/scenario.schema.json): loaded with its
generated enums, run over a document, its errors worded for people.

The schema says the structure: types, allowed keys, the one kind key of a step or an
expectation. Its enums of hierarchies, controllers and operators are not in the file: `schema()`
fills them in from harness.cgroups.knobs (VERSIONS, CONTROLLERS) and OPERATORS below, so the
schema that validates is always the table's and nothing can drift. The rules the schema cannot
say are harness/scenario_check.py's.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema

from .cgroups.knobs import CONTROLLERS, VERSIONS

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "scenario.schema.json"

# The operators of an expectation (`op`): the schema's enum.
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "approx", "range")
ORDERING_OPERATORS = ("<", "<=", ">", ">=")

Path_ = tuple[str | int, ...]  # a key path as parts: ("steps", 2, "write")

# --- loading it --------------------------------------------------------------------------------

# The schema's enums that are generated when it is loaded, from the lists they must equal: the
# file holds no copy of them, so the two cannot disagree.
_GENERATED_ENUMS: dict[str, tuple[str, ...]] = {
    "hierarchy": VERSIONS,
    "controller": CONTROLLERS,
    "operator": OPERATORS,
}


@functools.cache
def schema() -> dict[str, Any]:
    """The scenario schema: the file with its enums filled in (see _GENERATED_ENUMS)."""
    doc = json.loads(SCHEMA_PATH.read_text())
    for name, values in _GENERATED_ENUMS.items():
        definition = doc["$defs"][name]
        if "enum" in definition:
            raise ValueError(f"{SCHEMA_PATH}: $defs.{name} has an enum of its own; it is "
                             "generated when the schema is loaded (remove it from the file)")
        definition["enum"] = list(values)
    return doc


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema())


# --- running it --------------------------------------------------------------------------------

def problems(doc: Any) -> Iterator[tuple[Path_, str]]:
    """(key path, message) for each way `doc` breaks the schema, worded for people."""
    errors = list(_validator().iter_errors(doc))
    # A step/expectation without exactly one kind key gets that one problem only: the
    # per-kind errors under it would only repeat it.
    ambiguous = [tuple(e.absolute_path) for e in errors
                 if e.validator == "oneOf" and "x-exactly-one" in e.schema]
    for e in errors:
        path = tuple(e.absolute_path)
        is_kind_error = e.validator == "oneOf" and "x-exactly-one" in e.schema
        if not is_kind_error and any(path[:len(a)] == a for a in ambiguous):
            continue
        yield from _messages(e, path)


_TYPE_WORDS = {"string": "a string", "number": "a number", "integer": "a whole number",
               "object": "a mapping", "array": "a list", "boolean": "true or false",
               "null": "nothing"}


def _messages(e: jsonschema.ValidationError, path: Path_) -> Iterator[tuple[Path_, str]]:
    v, sch, inst = e.validator, e.schema, e.instance
    if "propertyNames" in e.relative_schema_path:
        msg = sch.get("x-pattern-message") if isinstance(sch, dict) else None
        yield (*path, str(inst)), f"bad name {inst!r}: {msg or e.message}"
    elif v == "additionalProperties" and isinstance(inst, dict):
        allowed = list(sch.get("properties", {}))
        for k in inst:
            if k not in allowed:
                yield (*path, k), (f"unknown key {k!r}{did_you_mean(k, allowed)}; allowed "
                                   f"here: {', '.join(allowed)}")
    elif v == "required" and isinstance(inst, dict):
        for k in e.validator_value:
            if k not in inst:
                yield path, f"missing key {k!r}"
    elif v == "type":
        types = e.validator_value if isinstance(e.validator_value, list) else [
            e.validator_value]
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in types if t != "null")
        yield path, f"expected {want}, got {describe(inst)}"
    elif v == "enum":
        what = sch.get("x-what", "value")
        choices = [str(c) for c in e.validator_value]
        yield path, (f"unknown {what} {inst!r}{did_you_mean(inst, choices)}; allowed: "
                     f"{', '.join(choices)}")
    elif v == "pattern":
        yield path, f"{inst!r}: {sch.get('x-pattern-message') or e.message}"
    elif v == "oneOf" and "x-exactly-one" in sch:
        kinds = sch["x-exactly-one"]
        what = {"expect": "an expectation", "gdb": "a breakpoint"}.get(
            str(path[0]) if path else "", "a step")
        present = [k for k in kinds if isinstance(inst, dict) and k in inst]
        if present:
            yield path, (f"{' and '.join(present)} in one entry: {what} has exactly one of "
                         f"{', '.join(kinds)}")
        else:
            yield path, f"{what} needs one of {', '.join(kinds)}"
    elif v in ("minimum", "exclusiveMinimum", "maximum"):
        bound = {"minimum": "at least", "exclusiveMinimum": "more than",
                 "maximum": "at most"}[v]
        yield path, f"{inst!r}: must be {bound} {e.validator_value}"
    elif v == "uniqueItems":
        yield path, "has the same entry twice"
    elif v in ("minItems", "minProperties", "minLength"):
        yield path, "must not be empty"
    else:
        yield path, e.message


# --- wording shared with the rules (harness/scenario_check.py) ---------------------------------

def did_you_mean(word: Any, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """` (did you mean X?)` for the choice `word` is likely a slip of, else ""."""
    choices = list(choices)
    text = str(word)
    if text[::-1] in choices and len(text) > 1:  # "=>" for ">="
        return f" (did you mean {text[::-1]}?)"
    dotted = [c for c in choices if c.endswith("." + text)]  # "swap" for "memory.swap"
    if len(dotted) == 1:
        return f" (did you mean {dotted[0]}?)"
    close = difflib.get_close_matches(text, choices, n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def describe(value: Any) -> str:
    """A value as a problem names it: `nothing (null)`, `a mapping`, `'32M'`."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
