"""What a scenario's `run` step may start in the guest: the workloads of images/workloads/,
busybox's applets and the few other binaries the guest image has (harness/images.py).

`kharness validate` asks `command_program` for the program a command line starts and refuses
one the image does not have, before anything boots.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess

from .workloads import WORKLOADS_DIR

# Programs of the guest image besides the workloads and busybox's applets (images.py).
GUEST_BINARIES = ("rdma", "ibv_devices", "ibv_devinfo", "dropbear", "dropbearkey")
# Used only when the host has no /bin/busybox to ask for its applets.
FALLBACK_APPLETS = (
    "[", "[[", "ash", "awk", "base64", "basename", "cat", "chmod", "chown", "cmp", "cp",
    "cut", "date", "dd", "df", "diff", "dirname", "dmesg", "du", "echo", "env", "expr",
    "false", "fallocate", "find", "free", "grep", "head", "hexdump", "id", "ionice", "ip",
    "kill", "killall", "ln", "ls", "mkdir", "mkfifo", "mknod", "mktemp", "mount", "mv",
    "nproc", "od", "pidof", "printf", "ps", "pwd", "readlink", "realpath", "rm", "rmdir",
    "sed", "seq", "setsid", "sh", "sha256sum", "sleep", "sort", "stat", "swapoff", "swapon",
    "sync", "sysctl", "tail", "tar", "taskset", "tee", "test", "time", "timeout", "top",
    "touch", "tr", "true", "truncate", "umount", "uname", "uniq", "unshare", "usleep", "wc",
    "xargs", "yes"
)
# Shell words that are not programs: builtins are fine as they are; after `exec`/`command` the
# next word is the program; a compound command (if, for, { ...) is not looked into.
_SHELL_BUILTINS = frozenset((
    ".", ":", "alias", "break", "cd", "continue", "eval", "exit", "export", "getopts",
    "hash", "local", "read", "readonly", "return", "set", "shift", "trap", "type", "ulimit",
    "umask", "unalias", "unset", "wait"
))
_SHELL_COMPOUND = frozenset((
    "if", "for", "while", "until", "case", "{", "(", "!", "[[", "function", "select"
))
_SHELL_PREFIX = frozenset({"exec", "command"})
_BIN_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@functools.cache
def busybox_applets() -> frozenset[str]:
    """The applets of the host's busybox, which is the guest's; a fallback list without one."""
    if os.path.exists("/bin/busybox"):
        try:
            out = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                                 timeout=10, check=True, stdin=subprocess.DEVNULL).stdout
            applets = frozenset(out.split())
            if applets:
                return applets
        except (OSError, subprocess.SubprocessError):
            pass
    return frozenset(FALLBACK_APPLETS)


@functools.cache
def guest_programs() -> frozenset[str]:
    """What a `run` step may start: the workloads, busybox applets, the image's binaries."""
    workload_names = {p.stem for p in WORKLOADS_DIR.glob("*.c")}
    return frozenset({*workload_names, *busybox_applets(), *GUEST_BINARIES, "busybox"})


def command_program(command: str) -> str | None:
    """The program a shell command line starts, or None when it cannot be told statically
    (a compound command, a variable, a path outside the bin directories). ValueError when the
    line does not parse (unbalanced quotes)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        i += 1
    while i < len(words) and words[i] in _SHELL_PREFIX:
        i += 1
    if i >= len(words):
        return None
    word = words[i]
    if (word in _SHELL_BUILTINS or word in _SHELL_COMPOUND or "$" in word or "`" in word
            or not word or word[0] in "(){};&|<>"):
        return None
    if "/" in word:
        if not word.startswith(_BIN_DIRS):
            return None  # e.g. a script an earlier step wrote to /tmp
        word = word.rsplit("/", 1)[1]
    return word
