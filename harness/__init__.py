"""kharness: boot real kernels in QEMU and drive cgroup v1/v2 experiments over SSH."""

__version__ = "0.1.0"
