"""Atomic writes: a terminated writer leaves nothing behind, and files honour the umask."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dyce.io import TERMINATED_STATUS, atomic_path, write_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_of_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "sub" / "b.bin") as tmp:
            tmp.write_bytes(b"data")
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.json", tmp_path / "sub" / "b.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def _writer(tmp_path: Path, code: str) -> subprocess.Popen:
    script = textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.05)


def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path):
    process = _writer(tmp_path, """
        import sys, time
        from pathlib import Path
        from dyce.io import atomic_path
        folder = Path(sys.argv[1])
        with atomic_path(folder / "out.parquet") as tmp:
            tmp.write_bytes(b"half")
            (folder / "started").touch()
            time.sleep(60)
    """)
    _wait_for(tmp_path / "started", process)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]


def test_sigterm_on_a_cli_command_exits_143_with_one_line(tmp_path):
    process = _writer(tmp_path, """
        import sys, time
        from pathlib import Path
        import dyce.report.tables
        from dyce.cli import main
        folder = Path(sys.argv[1])
        def slow_write(df, path, metadata=None):
            with dyce.report.tables.atomic_path(path) as tmp:
                tmp.write_bytes(b"half")
                (folder / "started").touch()
                time.sleep(60)
        dyce.report.tables.write_table = slow_write
        from tests.synthetic import make_synthetic_macs, make_synthetic_records
        from dyce.io import write_json
        from dyce.records.format import write_records
        write_records(folder / "r.parquet", make_synthetic_records(50, 3, 1, 5))
        write_json(folder / "m.json", make_synthetic_macs(3, 1))
        sys.exit(main(["search", str(folder / "r.parquet"), "--macs-info", str(folder / "m.json"),
                       "--method", "onepass", "--lambda", "0.9", "--no-progress",
                       "--out", str(folder / "out.parquet")]))
    """)
    _wait_for(tmp_path / "started", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == TERMINATED_STATUS
    assert err.strip() == "dyce search: terminated (SIGTERM)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "r.parquet", "started"]


def test_the_default_sigterm_handler_is_restored_after_a_write(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with atomic_path(tmp_path / "x") as tmp:
        tmp.write_bytes(b"x")
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_written_folders_get_the_mode_of_the_umask(tmp_path):
    from dyce.io import atomic_dir

    previous = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "cache") as tmp:
            (tmp / "x.npy").write_bytes(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "cache" / "x.npy").stat().st_mode) == 0o644
