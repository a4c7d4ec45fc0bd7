"""Open fds counted by stat() of /proc/<pid>/fd (Linux 6.2+) equal the directory listing's count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.collectors import procscan


def test_the_kernel_count_equals_the_listing_for_a_process_with_many_fds(tmp_path: Path) -> None:
    files = [os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_RDONLY) for i in range(20)]
    try:
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                                 pass_fds=files)
    finally:
        for fd in files:
            os.close(fd)
    try:
        count = procscan.FdCounter("/proc")
        listed = len(os.listdir(f"/proc/{child.pid}/fd"))
        assert listed >= 20
        assert count(child.pid) == listed
        if not count.by_size:
            pytest.skip("this kernel does not count fds in stat() (before Linux 6.2): the listing is used")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def test_a_gone_process_is_reported_vanished_and_a_plain_tree_is_listed(tmp_path: Path) -> None:
    count = procscan.FdCounter("/proc")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    with pytest.raises(OSError) as raised:
        count(gone.pid)
    assert procscan.skip_reason(raised.value) == "vanished"

    fake = tmp_path / "proc"
    (fake / "self" / "fd").mkdir(parents=True)
    (fake / "42" / "fd").mkdir(parents=True)
    for name in ("0", "1", "2"):
        (fake / "42" / "fd" / name).touch()
    plain = procscan.FdCounter(str(fake))
    assert not plain.by_size, "a directory's size is its block size, not a count"
    assert plain(42) == 3
