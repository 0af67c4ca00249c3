"""Shared pieces of Fata's benchmarks: processes pinned to a CPU, their CPU time, and the
network namespaces the benchmarks run in."""
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def kvm_flavour():
    """Which KVM this host offers: figures move with it (kvm_pvm exits cost ~25 us)."""
    if not os.path.exists("/dev/kvm"):
        return "none (no /dev/kvm)"
    for module, what in [("kvm_pvm", "kvm_pvm (nested, paravirtual)"),
                         ("kvm_intel", "kvm_intel (VMX)"), ("kvm_amd", "kvm_amd (SVM)")]:
        if os.path.exists(f"/sys/module/{module}"):
            return what
    return "unknown"


def describe_host():
    """The line every benchmark prints first: figures move between hosts of the same kind."""
    return (f"host: {cpu_model()}, {os.cpu_count()} CPUs, kernel {os.uname().release}, "
            f"KVM {kvm_flavour()}")


def ensure_commands(bench, commands):
    """Installs the Debian packages of `commands` ({command: package}) that are missing, as
    scripts/test does for the tests' peers."""
    missing = sorted({package for command, package in commands.items()
                      if subprocess.run(["sh", "-c", f"command -v {command}"],
                                        capture_output=True).returncode != 0})
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"{bench}: needs {' '.join(missing)}; install them (apt-get install) or run as root")
    print(f"{bench}: installing {' '.join(missing)} (Debian)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def tree_cpu_seconds(pid):
    """CPU time (user + system) of `pid` and all its descendants, in seconds."""
    parents, times = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    """A server started on CPU 0 (in a network namespace if given), stopped with SIGTERM;
    `ready()` says when it answers."""

    def __init__(self, name, argv, ready, netns=None):
        self.name = name
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.log = tempfile.NamedTemporaryFile("w+", prefix="fata-bench-", delete=False)
        self.proc = subprocess.Popen(prefix + ["taskset", "-c", "0"] + argv, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        self.netns = netns
        deadline = time.time() + 60
        while time.time() < deadline:
            if ready():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        sys.exit(f"{name} did not start:\n{open(self.log.name).read()[-2000:]}")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return open(self.log.name).read()


def setup_netns(ns, peer, tap_host, veth_host, veth_peer):
    """ns: a tap device tap0 at tap_host/24 and a veth pair to peer (veth_host, veth_peer)."""
    teardown_netns(ns, peer)
    for cmd in [
        ["ip", "netns", "add", ns], ["ip", "netns", "add", peer],
        ["ip", "-n", ns, "link", "set", "lo", "up"], ["ip", "-n", peer, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap"],
        ["ip", "-n", ns, "addr", "add", f"{tap_host}/24", "dev", "tap0"],
        ["ip", "-n", ns, "link", "set", "tap0", "up"],
        ["ip", "-n", ns, "link", "add", "vb0", "type", "veth", "peer", "name", "vb1", "netns", peer],
        ["ip", "-n", ns, "addr", "add", f"{veth_host}/24", "dev", "vb0"],
        ["ip", "-n", peer, "addr", "add", f"{veth_peer}/24", "dev", "vb1"],
        ["ip", "-n", ns, "link", "set", "vb0", "up"], ["ip", "-n", peer, "link", "set", "vb1", "up"],
    ]:
        run(*cmd)


def teardown_netns(ns, peer):
    for name in (ns, peer):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)




if __name__ == "__main__":
    # `python3 bench/benchlib.py`: the host line, for the shell benchmarks.
    print(describe_host())
