"""Peak resident memory of one SoftAttention forward+backward, in a fresh process (run as a script).

Usage: python soft_peak_memory.py N [dim heads batch]. Prints the growth of VmHWM (bytes) over the resident
set just before the step. Linux only: writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS.
Run with MALLOC_MMAP_THRESHOLD_=65536 so that big buffers are mmap'd and unmapped when freed, making RSS track
live tensors instead of glibc's cache. A warm-up step at a small N first pays the one-time allocations
(thread pools, kernels' workspaces) so that they do not count.
"""
from __future__ import annotations

import sys

import torch


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def main() -> None:
    n = int(sys.argv[1])
    dim, heads, batch = (int(a) for a in (sys.argv[2:5] if len(sys.argv) >= 5 else (192, 3, 1)))
    torch.set_num_threads(1)
    from soft import SoftAttention

    torch.manual_seed(0)
    layer = SoftAttention(dim, heads)  # pool sampler, m = 49 fixed
    warm = torch.randn(batch, 256, dim, requires_grad=True)
    layer(warm).sum().backward()
    layer.zero_grad(set_to_none=False)
    x = torch.randn(batch, n, dim, requires_grad=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS")
    layer(x).sum().backward()
    print(_status("VmHWM") - base)


if __name__ == "__main__":
    main()
