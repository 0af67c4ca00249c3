#!/usr/bin/env python3
"""bench/boot: how fast a Fata unikernel boots, against the same app as a Linux process.

Measures, over RUNS runs each (default 50, at least 20), interleaved:
  - hvt:  whole-process time of `fata run hello.hvt -- --count 1 --interval-ms 0` (posix_spawn to
          waitpid), with the fata command as scripts/install builds it (static) and as
          target/release/fata (dynamic), and the monitor's own split from --stats (set-up, first
          hypercall);
  - unix: the same app as a process, `fata run --target unix IMAGE -- --count 1 --interval-ms 0`,
          and the app executable started directly;
and prints median/min/max, the ratios, and the size of the (stripped) image `fata build` makes.

Usage: python3 bench/boot.py [RUNS]      (builds what it needs first)
"""
import os
import re
import statistics
import subprocess
import sys
import time

from benchlib import describe_host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = max(20, int(sys.argv[1]) if len(sys.argv) > 1 else 50)
APP_ARGS = ["--", "--count", "1", "--interval-ms", "0"]


def sh(*args):
    return subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "fata-cli"], cwd=ROOT, check=True)
    fata = os.path.join(ROOT, "target/release/fata")
    installed = sh("bash", "scripts/install", "--print-path").strip()
    hvt = sh(fata, "build", "--release", "--target", "hvt", "apps/hello").splitlines()[-1]
    unix = sh(fata, "build", "--release", "--target", "unix", "apps/hello").splitlines()[-1]
    return installed, fata, hvt, unix


def timed(cmd):
    """Runs `cmd` with stdout and stderr on pipes; returns (milliseconds, stderr)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    took = (time.perf_counter_ns() - start) / 1e6
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0 or stdout != "hello\n":
        sys.exit(f"unexpected result from {cmd}: {status} {stdout!r} {stderr!r}")
    return took, stderr


def summary(name, values):
    return (f"{name:<34} median {statistics.median(values):7.3f} ms   "
            f"min {min(values):7.3f}   max {max(values):7.3f}")


def main():
    print(describe_host(), flush=True)
    installed, fata, image, unix = build()
    cpus = os.cpu_count()
    hvt, hvt_dynamic, unix_fata, unix_direct, setup, first = [], [], [], [], [], []
    for _ in range(RUNS):
        hvt_dynamic.append(timed([fata, "run", image, *APP_ARGS])[0])
        took, stats = timed([installed, "run", image, "--stats", *APP_ARGS])
        hvt.append(took)
        m = re.search(r"setup ([\d.]+) ms, first hypercall ([\d.]+) ms", stats)
        if m:
            setup.append(float(m.group(1)))
            first.append(float(m.group(2)))
        unix_fata.append(timed([fata, "run", "--target", "unix", unix, *APP_ARGS])[0])
        unix_direct.append(timed([unix, *APP_ARGS[1:]])[0])
    size = os.path.getsize(image)
    print(f"bench/boot: hello, {RUNS} runs each, interleaved, on {cpus} CPUs (no pinning: one process at a time)")
    print(summary("hvt: fata run hello.hvt", hvt) + "   (fata from scripts/install: static)")
    print(summary("hvt: target/release/fata run", hvt_dynamic) + "   (dynamically linked)")
    if setup:
        print(summary("  monitor start -> guest entry", setup))
        print(summary("  monitor start -> first hypercall", first))
    print(summary("unix: fata run --target unix", unix_fata))
    print(summary("unix: the executable alone", unix_direct))
    print(f"ratio hvt / unix (fata run):   {statistics.median(hvt) / statistics.median(unix_fata):.2f}")
    print(f"ratio hvt / unix (executable): {statistics.median(hvt) / statistics.median(unix_direct):.2f}")
    print(f"stripped hvt image: {size} bytes ({size / 1024:.1f} KiB)")
    goal_time, goal_size = statistics.median(hvt) <= 2.5, size <= 64 * 1024
    print(f"goals: median <= 2.5 ms: {'met' if goal_time else 'NOT met'}; "
          f"image <= 64 KiB: {'met' if goal_size else 'NOT met'}")


if __name__ == "__main__":
    main()
