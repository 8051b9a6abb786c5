"""Benchmarks: ``clinic bench`` (benchmarks/harness.py) and the figures of docs/performance.md."""
