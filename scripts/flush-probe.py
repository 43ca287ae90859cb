#!/usr/bin/env python3
"""Times the disk's flush the way a PostgreSQL commit meets it: an 8 KiB pwrite + fdatasync into a
directory (by default PostgreSQL's data directory) every 10 ms for SECONDS, then prints p50, p99,
max and every flush of 50 ms or more with its wall-clock second. Run it beside a paced benchmark
to tell a storage stall from one of ours (BENCHMARKS.md, "The paced tail is the disk's").

Usage: scripts/flush-probe.py [SECONDS=60] [DIR=/var/lib/postgresql/15/main]
Needs write access to DIR (root or the postgres user); the probe file is removed on exit, but a
SIGKILL leaves flush-probe-<pid>.tmp behind.
"""
import os
import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
directory = sys.argv[2] if len(sys.argv) > 2 else "/var/lib/postgresql/15/main"
if not os.path.isdir(directory):
    sys.exit(f"flush-probe: {directory} is not a directory")
path = os.path.join(directory, f"flush-probe-{os.getpid()}.tmp")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block = b"x" * 8192
took, slow = [], []
try:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        os.pwrite(fd, block, 0)
        os.fdatasync(fd)
        ms = (time.perf_counter() - start) * 1000
        took.append(ms)
        if ms >= 50:
            slow.append(f"{time.strftime('%H:%M:%S')} {ms:.0f} ms")
        time.sleep(0.01)
finally:
    os.close(fd)
    os.unlink(path)
if not took:
    sys.exit("flush-probe: no flush completed")
took.sort()
print(f"flushes {len(took)}: p50 {took[len(took) // 2]:.2f} ms, p99 {took[int(len(took) * 0.99)]:.2f} ms, "
      f"max {took[-1]:.1f} ms")
for line in slow:
    print("slow flush", line)
