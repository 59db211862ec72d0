"""The machine the figures come from: CPU, kernel, virtualization, memory settings.

Benchmarks on a VM can differ from bare metal by an order of magnitude for
syscalls, page faults and cross-CPU wake-ups, so every report says where it
was measured and how we know (each fact names its source).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from typing import Any


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if ":" in line:
            key, _, val = line.partition(":")
            info.setdefault(key.strip(), val.strip())
    return info


def virtualization() -> tuple[str, list[str]]:
    """(verdict, evidence): whether this is a VM, and the facts that say so."""
    evidence = []
    flags = _cpuinfo().get("flags", "").split()
    if "hypervisor" in flags:
        evidence.append("CPU flag 'hypervisor' is set")
    cmdline = _read("/proc/cmdline") or ""
    for marker in ("firecracker", "nested_pvm"):
        if marker in cmdline:
            evidence.append(f"kernel command line mentions {marker!r}")
    if shutil.which("systemd-detect-virt"):
        res = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True)
        if res.stdout.strip() and res.stdout.strip() != "none":
            evidence.append(f"systemd-detect-virt says {res.stdout.strip()!r}")
    dmi = _read("/sys/class/dmi/id/product_name")
    if dmi:
        evidence.append(f"DMI product name {dmi!r}")
    verdict = "virtualized" if evidence else "no sign of virtualization"
    if "firecracker" in cmdline:
        verdict = "virtualized (Firecracker microVM" + (
            ", nested PVM)" if "nested_pvm=1" in cmdline else ")")
    return verdict, evidence


def describe() -> dict[str, Any]:
    """Facts about this machine, for the report's header."""
    cpu = _cpuinfo()
    virt, evidence = virtualization()
    mem_kib = 0
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    shm = next((line for line in (_read("/proc/mounts") or "").splitlines()
                if line.split()[1:2] == ["/dev/shm"]), "")
    import numpy

    return {
        "cpu": cpu.get("model name", platform.processor() or "unknown"),
        "cpu_family_model": f"family {cpu.get('cpu family', '?')}, model {cpu.get('model', '?')}",
        "cpus": os.cpu_count(),
        "cpu_mhz": cpu.get("cpu MHz", "?"),
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "kernel_version": platform.version(),
        "virtualization": virt,
        "virtualization_evidence": evidence,
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "thp": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "thp_shmem": _read("/sys/kernel/mm/transparent_hugepage/shmem_enabled"),
        "dev_shm": " ".join(shm.split()[2:4]),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "load_avg": _read("/proc/loadavg"),
    }


if __name__ == "__main__":
    for k, v in describe().items():
        print(f"{k}: {v}")
