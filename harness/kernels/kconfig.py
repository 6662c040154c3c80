"""Kconfig fragments and the verification of a configured kernel against them.

A fragment (`kconfig/*.config`) holds `CONFIG_X=value` and `# CONFIG_X is not set` lines.
Fragments are merged in order as scripts/kconfig/merge_config.sh does (a later fragment
overrides an earlier one, and the override is reported) and written out for
KCONFIG_ALLCONFIG. After `olddefconfig`, every option a fragment asks for must be set as asked:
an option whose dependency is off is "dropped" by Kconfig without a word, and `verify` names it
with the dependencies that are off (a light parse of the tree's Kconfig files); options the
tree's Kconfig does not define at all (MEMCG_V1 before 6.11) are reported apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .kernel import BuildError


class FragmentError(BuildError):
    """Fragments with bad lines: every problem, one per line."""


# --- fragments ------------------------------------------------------------------------------

_OPTION = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_NOT_SET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set\s*$")
_VALUE = re.compile(r'^(y|m|n|-?\d+|0x[0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$')


@dataclass(frozen=True)
class Fragment:
    """One kconfig fragment: `CONFIG_X=value` and `# CONFIG_X is not set` lines, comments."""

    path: Path
    text: str
    options: dict[str, str]  # CONFIG_X -> y, m, n, a number or a string without its quotes
    lines: dict[str, int]  # CONFIG_X -> line number

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _unquote(value: str) -> str:
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_fragment(path: Path, problems: list[str] | None = None) -> Fragment:
    """Read a fragment; bad lines go to `problems` (or raise FragmentError when None)."""
    own: list[str] = []
    out = problems if problems is not None else own
    try:
        text = path.read_text()
    except OSError as exc:
        out.append(f"{path}: cannot read: {exc.strerror or exc}")
        text = ""
    options: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = _NOT_SET.match(line)
        if m:
            key, value = m.group(1), "n"
        elif not line or line.startswith("#"):
            continue
        else:
            m = _OPTION.match(line)
            if not m:
                out.append(f"{path}:{number}: not an option line: {raw!r} (expected "
                           "CONFIG_NAME=y|m|n|NUMBER|\"STRING\" or # CONFIG_NAME is not set)")
                continue
            key, value = m.group(1), m.group(2).strip()
            if not _VALUE.match(value):
                out.append(f"{path}:{number}: {key}: bad value {value!r} (y, m, n, a number or "
                           "a double-quoted string)")
                continue
        if key in options:
            out.append(f"{path}:{number}: {key} is already set on line {lines[key]}")
            continue
        options[key] = _unquote(value)
        lines[key] = number
    if problems is None and own:
        raise FragmentError("\n".join(own))
    return Fragment(path, text, options, lines)


@dataclass(frozen=True)
class Asked:
    """What the merged fragments ask for one option, and which fragment line asks it."""

    option: str
    value: str
    fragment: Path
    line: int


def merge(fragments: Sequence[Fragment]) -> tuple[dict[str, Asked], list[str]]:
    """Fragments merged in order (later ones win), and a note for each override."""
    merged: dict[str, Asked] = {}
    notes = []
    for frag in fragments:
        for key, value in frag.options.items():
            prev = merged.get(key)
            if prev and prev.value != value:
                notes.append(f"{key}: {frag.path}:{frag.lines[key]} sets {_show(value)}, over "
                             f"{_show(prev.value)} from {prev.fragment}:{prev.line}")
            merged[key] = Asked(key, value, frag.path, frag.lines[key])
    return merged, notes


def _show(value: str) -> str:
    return "is not set" if value == "n" else value


def allconfig_text(merged: dict[str, Asked]) -> str:
    """The merged fragment, in the .config syntax KCONFIG_ALLCONFIG reads."""
    out = []
    for a in merged.values():
        if a.value == "n":
            out.append(f"# {a.option} is not set")
        elif a.value in ("y", "m") or re.fullmatch(r"-?\d+|0x[0-9a-fA-F]+", a.value):
            out.append(f"{a.option}={a.value}")
        else:
            escaped = a.value.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'{a.option}="{escaped}"')
    return "\n".join(out) + "\n"


# --- Kconfig: which options exist, what they depend on ----------------------------------------

@dataclass
class KconfigSymbol:
    name: str
    where: list[str] = field(default_factory=list)  # file:line
    depends: list[str] = field(default_factory=list)  # `depends on` expressions, `if` blocks too


_KC_CONFIG = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$")
_KC_DEPENDS = re.compile(r"^\s*depends\s+on\s+(.+?)\s*(?:#.*)?$")
_KC_IF = re.compile(r"^\s*if\s+(.+?)\s*(?:#.*)?$")
_KC_BLOCK_END = re.compile(r"^\s*(choice|endchoice|menu|endmenu|if|endif|source|comment|"
                           r"mainmenu)\b")


def kconfig_index(tree: Path) -> dict[str, KconfigSymbol]:
    """Every symbol the tree's Kconfig files define, with its `depends on` (and enclosing `if`)
    expressions. A light parse, for messages: Kconfig itself decides the values."""
    index: dict[str, KconfigSymbol] = {}
    for path in tree.rglob("Kconfig*"):
        if not path.is_file() or "Documentation" in path.parts:
            continue
        rel = path.relative_to(tree)
        current: KconfigSymbol | None = None
        ifs: list[str] = []
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = _KC_CONFIG.match(line)
            if m:
                current = index.setdefault(m.group(1), KconfigSymbol(m.group(1)))
                current.where.append(f"{rel}:{number}")
                current.depends.extend(ifs)
                continue
            m = _KC_IF.match(line)
            if m and not line.lstrip().startswith("if_"):
                ifs.append(m.group(1))
                current = None
                continue
            if re.match(r"^\s*endif\b", line):
                if ifs:
                    ifs.pop()
                current = None
                continue
            if _KC_BLOCK_END.match(line):
                current = None
                continue
            m = _KC_DEPENDS.match(line)
            if m and current is not None:
                current.depends.append(m.group(1))
    return index


_TOKEN = re.compile(r"\s*(&&|\|\||!=|=|!|\(|\)|\"[^\"]*\"|[A-Za-z0-9_]+)")


def satisfied(expr: str, values: dict[str, str]) -> bool | None:
    """A Kconfig dependency expression (&&, ||, !, =, !=, parentheses) evaluated against a
    .config (m counts as on), or None when it cannot be parsed."""
    tokens = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            return None
        tokens.append(m.group(1))
        pos = m.end()
        if not expr[pos:].strip():
            break

    def value(tok: str) -> str:
        if tok.startswith('"'):
            return tok[1:-1]
        if tok in ("y", "m", "n") or tok.isdigit():
            return tok
        return values.get(f"CONFIG_{tok}", "n")

    out = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("&&", "||"):
            out.append(" and " if tok == "&&" else " or ")
        elif tok == "!":
            out.append(" not ")
        elif tok in ("(", ")"):
            out.append(tok)
        elif i + 1 < len(tokens) and tokens[i + 1] in ("=", "!="):
            if i + 2 >= len(tokens):
                return None
            equal = value(tok) == value(tokens[i + 2])
            out.append(str(equal if tokens[i + 1] == "=" else not equal))
            i += 2
        else:
            out.append(str(value(tok) != "n"))
        i += 1
    try:
        # the string holds only True, False, and, or, not and parentheses
        return bool(eval("".join(out), {"__builtins__": {}}))
    except SyntaxError:
        return None


def unmet(expr: str, values: dict[str, str]) -> list[str]:
    """Why a dependency expression (a `depends on` line) is not met: [] when it is; the symbol
    with its value for a plain one (`BLK_CGROUP (is not set)`); the expression with the values
    of its symbols otherwise."""
    if satisfied(expr, values) is True:
        return []
    names = list(dict.fromkeys(re.findall(r"\b([A-Z][A-Z0-9_]*)\b", expr)))
    shown = [f"{n} ({_show(values.get(f'CONFIG_{n}', 'n'))})" for n in names]
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", expr.strip()):
        return shown
    return [f"{expr.strip()} [{', '.join(shown)}]"]


# --- verification ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Dropped:
    option: str
    asked: str
    got: str
    fragment: str
    line: int
    depends: tuple[str, ...] = ()  # the dependencies that are off, e.g. "BLK_CGROUP (is not set)"

    def describe(self) -> str:
        why = f": depends on {', '.join(self.depends)}" if self.depends else ""
        return (f"{self.option}={self.asked} ({self.fragment}:{self.line}) ended up "
                f"{_show(self.got)}{why}")


@dataclass(frozen=True)
class Verification:
    dropped: tuple[Dropped, ...]
    absent: tuple[Asked, ...]  # options the source's Kconfig does not define

    @property
    def ok(self) -> bool:
        return not self.dropped


def verify(merged: dict[str, Asked], config: dict[str, str],
           index: dict[str, KconfigSymbol]) -> Verification:
    dropped, absent = [], []
    for a in merged.values():
        name = a.option.removeprefix("CONFIG_")
        if name not in index:
            absent.append(a)
            continue
        got = config.get(a.option, "n")
        if got == a.value:
            continue
        deps: list[str] = []
        for expr in index[name].depends:
            deps.extend(d for d in unmet(expr, config) if d not in deps)
        dropped.append(Dropped(a.option, a.value, got, str(a.fragment), a.line, tuple(deps)))
    return Verification(tuple(dropped), tuple(absent))
