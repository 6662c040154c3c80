"""Expectations against observations: one Check per `expect` entry, readable as it stands.

The runner observes (reads a metric, a file's key, a step's outcome) and calls `evaluate`; what
comes back says what was expected and what was seen in the scenario's own units:

    expected peak approx 32M ±10%, observed 33554432 (32M)

Values are interpreted with harness/units.py: sizes are powers of 1024 (`32M` = 33554432),
numeric strings read from cgroup files are numbers, `max` is larger than any number,
anything else is a word compared as written (`SIGKILL`, `EINVAL`, `FROZEN`).

Check is a result record: it is defined with the other result types in harness/results.py
(the bottom floor, which knows nothing of scenarios) and re-exported here.
"""

from __future__ import annotations

import math
import signal
from typing import Any

from .cgroups.knobs import BYTE_METRICS
from .results import Check
from .scenario import ROOT, Expectation
from .units import format_size, parse_size, parse_tolerance, parse_value

Observed = int | float | str | None

__all__ = ["Check", "Observed", "describe", "evaluate", "expected_text", "skip"]


def evaluate(expectation: Expectation, observed: Observed, reason: str | None = None) -> Check:
    """Compare what was observed with what `expectation` wants.

    `observed` is what the runner read: a number, a cgroup file's text (or the value of its
    `key`), a step's exit status, its signal (a name such as "SIGKILL", a number, or "none"),
    or a value from its stdout. None means there was nothing to observe; the check is then
    skipped with `reason` (e.g. "memory.swap.peak does not exist on 6.1.0-56-amd64").
    Except for a step's signal: None without a reason is a step that no signal ended, which
    `signal == SIGKILL` must fail on, not skip."""
    if (observed is None and reason is None and expectation.kind == "step"
            and expectation.field == "signal"):
        observed = "none"
    if observed is None:
        return skip(expectation, reason or "nothing was observed")
    passed, note = _compare(expectation, observed)
    text = _observed_text(observed, _byte_sized(expectation), None if passed else note)
    if expectation.kind == "step" and expectation.field == "signal":
        name = _signal_name(observed)
        if name != text:
            text = f"{text} ({name})"
    return Check(description=describe(expectation), expected=expected_text(expectation),
                 observed=text, passed=passed)


def skip(expectation: Expectation, reason: str) -> Check:
    """A check that did not apply or could not be observed (its `when` does not match, the
    metric's file does not exist on this kernel, the step it names did not run)."""
    return Check(description=describe(expectation), expected=expected_text(expectation),
                 observed="", passed=False, skipped_reason=reason)


def describe(e: Expectation) -> str:
    """"metric oom_kill of hog >= 1", "step hog signal == SIGKILL",
    "file memory.events oom_group_kill of hog == 1"."""
    condition = f"{_op_text(e)}"
    if e.kind == "step":
        return f"step {e.target} {e.field or 'exit_status'} {condition}"
    where = f"of {e.cgroup}" if e.cgroup not in (None, ROOT) else "of the scenario's cgroup"
    if e.kind == "metric":
        return f"metric {e.target} {where} {condition}"
    key = f" {e.key}" if e.key else ""
    return f"file {e.target}{key} {where} {condition}"


def expected_text(e: Expectation) -> str:
    """"peak approx 32M ±10%", "signal == SIGKILL", "memory.events oom_kill in [1, 3]"."""
    return f"{_subject(e)} {_op_text(e)}"


# --- comparing -------------------------------------------------------------------------------

def _compare(e: Expectation, observed: Observed) -> tuple[bool, str]:
    """(passed, a note on the observed value, or "")."""
    if e.kind == "step" and e.field == "signal":
        want, have = _signal_name(e.value), _signal_name(observed)
        equal = want == have
        if e.op in ("==", "!="):
            return (equal if e.op == "==" else not equal), ""
        return False, f"a signal cannot be compared with {e.op}"
    have_value = _value(observed)
    if e.op in ("==", "!="):
        want_value = _value(e.value)
        if _is_num(want_value) and _is_num(have_value):
            equal = float(want_value) == float(have_value)
        else:
            equal = str(want_value) == str(have_value)
        return (equal if e.op == "==" else not equal), ""
    have = _number(have_value)
    if have is None:
        return False, "not a number"
    if e.op == "range":
        low, high = (_number(_value(v)) for v in e.value)
        if low is None or high is None:
            return False, f"bad range {e.value!r}"
        return low <= have <= high, ""
    want = _number(_value(e.value))
    if want is None:
        return False, f"cannot compare with {e.value!r}"
    if e.op == "approx":
        try:
            kind, amount = parse_tolerance(e.tolerance)
        except (ValueError, TypeError) as exc:
            return False, str(exc)
        allowed = abs(want) * amount / 100 if kind == "percent" else amount
        deviation = have - want
        note = ""
        if want and math.isfinite(deviation):
            note = f"{deviation / abs(want) * 100:+.1f}%"
        return abs(deviation) <= allowed, note
    return {"<": have < want, "<=": have <= want, ">": have > want,
            ">=": have >= want}[e.op], ""


def _value(x: Any) -> int | float | str:
    """A value as written or observed -> number (sizes in bytes), `max`, or a word."""
    if isinstance(x, str):
        x = x.strip()
    try:
        return parse_value(x)
    except (ValueError, TypeError):
        return str(x)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(x: float | str) -> float | None:
    if _is_num(x):
        return float(x)
    if x == "max":
        return math.inf
    return None


def _signal_name(x: Any) -> str:
    """9, "9", "KILL", "sigkill", "SIGKILL" -> "SIGKILL"; 0, "none", "" -> "none"."""
    if isinstance(x, str):
        text = x.strip().upper()
        if text.lstrip("-").isdigit():
            x = int(text)
        elif text in ("", "NONE"):
            return "none"
        else:
            return text if text.startswith("SIG") else f"SIG{text}"
    if isinstance(x, int) and not isinstance(x, bool):
        if x == 0:
            return "none"
        try:
            return signal.Signals(abs(x)).name
        except ValueError:
            return str(x)
    return str(x)


# --- wording ---------------------------------------------------------------------------------

def _subject(e: Expectation) -> str:
    if e.kind == "step":
        return e.field or "exit_status"
    if e.kind == "file" and e.key:
        return f"{e.target} {e.key}"
    return e.target


def _op_text(e: Expectation) -> str:
    if e.op == "range" and isinstance(e.value, (list, tuple)) and len(e.value) == 2:
        return f"in [{_written(e.value[0])}, {_written(e.value[1])}]"
    if e.op == "approx":
        return f"approx {_written(e.value)} ±{_written(e.tolerance)}"
    return f"{e.op} {_written(e.value)}"


def _written(x: Any) -> str:
    """A value as the scenario wrote it."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:g}"
    return str(x).strip() if x is not None else "?"


def _byte_sized(e: Expectation) -> bool:
    """Whether to show observed numbers as sizes too: the metric counts bytes, or the scenario
    wrote a size (`32M`)."""
    if e.kind == "metric" and e.target in BYTE_METRICS:
        return True
    values = list(e.value) if isinstance(e.value, (list, tuple)) else [e.value]
    if e.op == "approx":
        values.append(e.tolerance)
    return any(_is_size_text(v) for v in values)


def _is_size_text(x: Any) -> bool:
    if not isinstance(x, str) or not x.strip() or not x.strip()[-1].isalpha():
        return False
    try:
        parse_size(x.strip())
    except (ValueError, TypeError):
        return False
    return True


def _observed_text(observed: Observed, byte_sized: bool, note: str | None) -> str:
    """`33554432 (32M)`; a failed comparison adds its note: `41943040 (40M, +25.0%)`."""
    if isinstance(observed, bool):
        text = str(observed).lower()
    elif isinstance(observed, float):
        text = f"{observed:.6g}"
    else:
        text = str(observed).strip()
    if "\n" in text or len(text) > 200:
        text = repr(text if len(text) <= 200 else text[:200] + "...")
    notes = []
    value = _value(observed)
    if byte_sized and isinstance(value, int) and not isinstance(value, bool) and value >= 1024:
        notes.append(format_size(value))
    if note:
        notes.append(note)
    return f"{text} ({', '.join(notes)})" if notes else text
