"""Which functions a kernel has, and how: out of line, only inlined, or not at all.

`kharness reproduce` compares a pasted call chain with a kernel's: a frame of the paste can be
a function this kernel has as a symbol of its own (a breakpoint can go there and gdb shows it
as a frame), one that exists only as inlined copies (gdb still shows it in a `bt`, as an inlined
frame, but the kernel's unwinder never does and a breakpoint on it is one per copy), or one it
does not have at all (renamed, removed, or in code this kernel's configuration leaves out).

Two looks at the vmlinux with DWARF (`kernels.fetch_debug`):
- its ELF symbol table (`nm`): the out-of-line functions, clone suffixes (`.constprop.0`,
  `.isra.0`, `.cold`) dropped; 0.3 s for a Debian kernel;
- gdb, for the names the symbol table lacks and for every name's source file: a function that
  `decode_line` resolves without a symbol of its own is inlined-only (all the names in one gdb
  run: about 4 s for an 860 MB vmlinux, less once gdb's index of it is in the cache the
  captures share, `gdb-index/`).

Nothing is cached: both looks together take seconds, and the answer depends on the exact
vmlinux (its build-id), which the cache of kernels already keys.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..paths import cache_dir

SYMBOL = "symbol"  # out of line: a symbol of its own (maybe also inlined somewhere)
INLINED = "inlined"  # only inlined copies: in DWARF, not in the symbol table
ABSENT = "absent"  # neither
STATES = (SYMBOL, INLINED, ABSENT)

# Prints one JSON line per name: does gdb resolve it, and where is it declared.
_GDB_SCRIPT = r'''
import gdb, json
def _kh_where(name):
    try:
        sals = gdb.decode_line(name)[1]
    except gdb.error:
        return None
    if not sals:
        return None
    sym = None
    try:
        sym = gdb.lookup_global_symbol(name) or gdb.lookup_static_symbol(name)
    except gdb.error:
        pass
    if sym is not None and sym.symtab is not None:
        return sym.symtab.filename
    # inlined-only: no symbol of its own; the block of one of its copies names its file
    for sal in sals:
        try:
            block = gdb.block_for_pc(sal.pc)
        except (gdb.error, RuntimeError):
            block = None
        while block is not None:
            fn = block.function
            if fn is not None and fn.name == name and fn.symtab is not None:
                return fn.symtab.filename
            block = block.superblock
    return ""
for _kh_name in json.loads(open(KH_NAMES).read()):
    print("KH " + json.dumps([_kh_name, _kh_where(_kh_name)]))
'''


class FunctionLookupError(RuntimeError):
    """nm or gdb could not read the vmlinux."""


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    state: str  # SYMBOL | INLINED | ABSENT
    file: str | None = None  # the source file gdb names for it (mm/memcontrol.c)

    @property
    def exists(self) -> bool:
        return self.state != ABSENT


def symbol_names(vmlinux: Path) -> set[str]:
    """The text symbols of a vmlinux, clone suffixes dropped."""
    try:
        out = subprocess.run(["nm", "--defined-only", str(vmlinux)], check=True,
                             capture_output=True, text=True, timeout=120).stdout
    except FileNotFoundError:
        raise FunctionLookupError("nm is not installed (apt-get install binutils)") from None
    except subprocess.CalledProcessError as exc:
        raise FunctionLookupError(f"nm {vmlinux}: {exc.stderr.strip()[:300]}") from None
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            names.add(parts[2].partition(".")[0])
    return names


def gdb_lookup(vmlinux: Path, names: list[str], timeout: float = 300.0) -> dict[str, str | None]:
    """name -> its source file when gdb resolves it in `vmlinux` (inlined-only ones too), else
    None. One gdb run for all the names."""
    if not names:
        return {}
    with tempfile.TemporaryDirectory(prefix="kh-functions-") as tmp:
        names_file = Path(tmp) / "names.json"
        names_file.write_text(json.dumps(names))
        script = Path(tmp) / "lookup.py"
        script.write_text(f"KH_NAMES = {str(names_file)!r}\n" + _GDB_SCRIPT)
        index = cache_dir() / "gdb-index"  # the capture's: gdb's DWARF index by build ID
        index.mkdir(parents=True, exist_ok=True)
        argv = ["gdb", "-nx", "-batch", "-ex", "set pagination off",
                "-ex", f"set index-cache directory {index}", "-ex", "set index-cache enabled on",
                "-ex", f"file {vmlinux}", "-x", str(script)]
        try:
            proc = subprocess.run(argv, check=False, capture_output=True, text=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise FunctionLookupError("gdb is not installed (apt-get install gdb)") from None
        except subprocess.TimeoutExpired:
            raise FunctionLookupError(f"gdb took over {timeout:.0f}s to read {vmlinux}") from None
    found: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("KH "):
            name, where = json.loads(line[3:])
            found[name] = where
    if len(found) != len(names):
        raise FunctionLookupError(f"gdb could not look up functions in {vmlinux}: "
                                  f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return found


def lookup(vmlinux: Path, names: list[str] | tuple[str, ...] | set[str]) -> dict[str, FunctionInfo]:
    """Each name's FunctionInfo in the kernel of `vmlinux` (a vmlinux with DWARF)."""
    wanted = sorted(set(names))
    symbols = symbol_names(vmlinux)
    files = gdb_lookup(vmlinux, wanted)
    out = {}
    for name in wanted:
        file = files.get(name)
        if name in symbols:
            out[name] = FunctionInfo(name, SYMBOL, file or None)
        elif file is not None:
            out[name] = FunctionInfo(name, INLINED, file or None)
        else:
            out[name] = FunctionInfo(name, ABSENT)
    return out
