#!/usr/bin/env python3
"""bench/block: Fata's block devices against fio on the same file, in the same run.

For each case (sequential reads and writes of 4 KiB, 64 KiB, 128 KiB and 1 MiB requests, random
4 KiB reads; 32 requests in flight), runs interleaved, ROUNDS times:
  - fio (Debian's): --direct=1 --ioengine=io_uring --iodepth=32, one job;
  - Fata hvt: bench/blockload as a unikernel, `--block storage=FILE`, --depth 32;
  - Fata unix: the same app as a process;
and, to show what batching buys, hvt with `--unbatched` (one doorbell exit per request) for
random 4 KiB reads and 128 KiB sequential reads. Everything runs on CPU 1 (`taskset -c 1`),
against one preallocated file of SIZE on the file system that holds target/ (filled once with
real data: holes would read back without touching the disk). Prints medians, the ratios to fio
and the CPU model, and a Markdown table for docs/benchmarks.md.

Usage: python3 bench/block.py [--seconds S] [--rounds N] [--size 1G] [--quick]
Goals (issue 11): >= 1.0x fio for sequential requests of 128 KiB and more, >= 0.8x fio's IOPS for
random 4 KiB reads at the same queue depth.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

from benchlib import ROOT, describe_host, ensure_commands

DEPTH = 32
CASES = [
    ("read", 4096), ("read", 65536), ("read", 131072), ("read", 1 << 20),
    ("write", 4096), ("write", 65536), ("write", 131072), ("write", 1 << 20),
    ("randread", 4096),
]
UNBATCHED = [("randread", 4096), ("read", 131072)]
LINE = re.compile(r"blockload: .*: ([0-9.]+) MiB/s ([0-9.]+) IOPS \((\d+) requests, (\d+) failed")


def sh(*args, **kw):
    return subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True, **kw).stdout


def prepare_file(path, size):
    """A file of `size` bytes of real data (written once, kept between runs)."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    print(f"bench/block: writing the {size >> 20} MiB test file {path} (once)", file=sys.stderr)
    subprocess.run(["fio", "--name=fill", f"--filename={path}", "--rw=write", "--bs=1M",
                    "--direct=1", f"--size={size}", "--refill_buffers", "--output=/dev/null"],
                   check=True)


def fio(path, pattern, bs, seconds, size):
    out = sh("taskset", "-c", "1", "fio", "--name=bench", f"--filename={path}", "--direct=1",
             "--ioengine=io_uring", f"--rw={pattern}", f"--bs={bs}", f"--iodepth={DEPTH}",
             "--numjobs=1", f"--size={size}", f"--runtime={seconds}", "--time_based",
             "--output-format=json")
    job = json.loads(out)["jobs"][0]
    side = job["write" if pattern == "write" else "read"]
    return side["bw_bytes"] / (1 << 20), side["iops"]


def fata(fata_cmd, target, path, pattern, bs, seconds, unbatched=False):
    cmd = ["taskset", "-c", "1", fata_cmd, "run", "--release", "--target", target]
    if target == "hvt":
        cmd += ["--mem", "256M"]
    cmd += ["bench/blockload", "--block", f"storage={path}", "--", "--pattern", pattern,
            "--bs", str(bs), "--depth", str(DEPTH), "--seconds", str(seconds)]
    if unbatched:
        cmd.append("--unbatched")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    match = LINE.search(out.stdout)
    if out.returncode != 0 or not match:
        sys.exit(f"bench/block: {' '.join(cmd)} failed ({out.returncode}):\n"
                 f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return float(match.group(1)), float(match.group(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--size", default="1G", help="test file size (default 1G)")
    parser.add_argument("--quick", action="store_true", help="128 KiB reads and 4 KiB random reads only")
    args = parser.parse_args()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = int(args.size[:-1]) * units[args.size[-1].upper()] if args.size[-1].isalpha() else int(args.size)

    print(describe_host(), flush=True)
    ensure_commands("bench/block", {"fio": "fio"})
    print("bench/block: building the fata command and bench/blockload", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "fata-cli"], cwd=ROOT, check=True)
    fata_cmd = os.path.join(ROOT, "target/release/fata")
    for target in ("hvt", "unix"):
        sh(fata_cmd, "build", "--release", "--target", target, "bench/blockload")
    path = os.path.join(ROOT, "target/bench-block/disk.img")
    prepare_file(path, size)

    cases = [c for c in CASES if not args.quick or c in UNBATCHED]
    results = {}
    for case in cases:
        pattern, bs = case
        runs = {"fio": [], "hvt": [], "unix": []}
        if case in UNBATCHED:
            runs["hvt unbatched"] = []
        for round_ in range(args.rounds):
            print(f"bench/block: {pattern} {bs >> 10} KiB, round {round_ + 1}/{args.rounds}",
                  file=sys.stderr)
            runs["fio"].append(fio(path, pattern, bs, args.seconds, size))
            runs["hvt"].append(fata(fata_cmd, "hvt", path, pattern, bs, args.seconds))
            runs["unix"].append(fata(fata_cmd, "unix", path, pattern, bs, args.seconds))
            if "hvt unbatched" in runs:
                runs["hvt unbatched"].append(
                    fata(fata_cmd, "hvt", path, pattern, bs, args.seconds, unbatched=True))
        results[case] = {who: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
                         for who, rs in runs.items()}

    print(f"\nbench/block; everything on CPU 1; queue depth "
          f"{DEPTH}; {args.rounds} interleaved rounds of {args.seconds} s, medians; "
          f"file {size >> 20} MiB on {sh('df', '--output=source', path).split()[-1]}\n")
    print("| case | fio | Fata hvt | hvt / fio | Fata unix | unix / fio | hvt unbatched |")
    print("|---|---|---|---|---|---|---|")
    for (pattern, bs), r in results.items():
        key = 1 if pattern == "randread" else 0
        unit = "IOPS" if key else "MiB/s"
        base, hvt, unix = r["fio"][key], r["hvt"][key], r["unix"][key]

        def fmt(value):
            return f"{value:,.0f} {unit}"

        unbatched = "-"
        if "hvt unbatched" in r:
            value = r["hvt unbatched"][key]
            unbatched = f"{fmt(value)} ({value / hvt:.2f}x of batched)"
        print(f"| {pattern} {bs >> 10} KiB | {fmt(base)} | {fmt(hvt)} | {hvt / base:.2f}x | "
              f"{fmt(unix)} | {unix / base:.2f}x | {unbatched} |")

if __name__ == "__main__":
    main()
