"""Measurement: FLOPs (fvcore, audited), peak memory (CUDA allocator / CPU high-water mark), latency (torch Timer).

Each function returns its own small value; :mod:`attnbench.cell` puts them into one results row.
"""
