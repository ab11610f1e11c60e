"""Benchmarks: ``python -m benchmarks`` (see the README, Performance)."""
