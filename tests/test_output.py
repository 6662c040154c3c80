"""Writes that fail (a full disk) lose nothing already written: harness/output.py.

A real full disk is tests/test_reliability_integration.py (a tmpfs); here a child process with
RLIMIT_FSIZE makes writes fail part way (EFBIG, as ENOSPC would), and /dev/full fails every
write with ENOSPC.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.output import OutputError, append_line, atomic_write, free_bytes
from harness.results import ResultsWriter, ScenarioResult

ROOT = Path(__file__).resolve().parent.parent


def _in_child_with_file_limit(limit: int, code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a Python child whose files cannot grow past `limit` bytes."""
    prelude = textwrap.dedent(f"""\
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_line_that_does_not_fit_is_cut_off_again(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n')
    proc = _in_child_with_file_limit(len(path.read_bytes()) + 100, f"""
        from pathlib import Path
        from harness.output import OutputError, append_line
        try:
            append_line(Path({str(path)!r}), '{{"n": 3, "pad": "' + 'x' * 1000 + '"}}')
        except OutputError as exc:
            print(exc.code, exc)
    """)
    assert proc.stdout.startswith("EFBIG cannot write "), proc.stderr
    assert path.read_text() == '{"n": 1}\n{"n": 2}\n'  # whole lines only, as before


def test_a_rewrite_that_fails_keeps_the_previous_file(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text("<old/>\n")
    proc = _in_child_with_file_limit(50, f"""
        from pathlib import Path
        from harness.output import OutputError, atomic_write
        try:
            atomic_write(Path({str(path)!r}), "<new>" + "x" * 1000 + "</new>")
        except OutputError as exc:
            print(exc.code)
    """)
    assert proc.stdout.strip() == "EFBIG", proc.stderr
    assert path.read_text() == "<old/>\n"
    assert [p.name for p in tmp_path.iterdir()] == ["junit.xml"]  # no temporary file left


def test_atomic_write_replaces_and_append_line_appends(tmp_path):
    atomic_write(tmp_path / "a.json", "one")
    atomic_write(tmp_path / "a.json", "two")
    assert (tmp_path / "a.json").read_text() == "two"
    append_line(tmp_path / "l", "x")
    append_line(tmp_path / "l", "y")
    assert (tmp_path / "l").read_text() == "x\ny\n"
    assert free_bytes(tmp_path / "not" / "yet") > 0  # the nearest existing parent


def test_enospc_names_the_file_and_the_errno(tmp_path):
    with pytest.raises(OutputError) as info:
        append_line(Path("/dev/full"), "x")
    assert info.value.code == "ENOSPC"
    assert str(info.value) == "cannot write /dev/full: ENOSPC (No space left on device)"


def test_the_results_writer_keeps_whole_results_only(tmp_path):
    writer = ResultsWriter(tmp_path)
    writer.add(ScenarioResult("a", "6.1", "debian:6.1", "v2", "pass"))
    writer.jsonl.rename(tmp_path / "kept.jsonl")
    writer.jsonl.symlink_to("/dev/full")
    with pytest.raises(OutputError):
        writer.add(ScenarioResult("b", "6.1", "debian:6.1", "v2", "pass"))
    assert [r.scenario for r in writer.results] == ["a"]  # what is in memory is what is on disk
    assert json.loads((tmp_path / "kept.jsonl").read_text())["scenario"] == "a"
