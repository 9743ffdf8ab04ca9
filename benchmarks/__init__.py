"""Benchmark suites: synthetic ADC2021 data -> teacher -> distilled student -> exports -> benchmark report.

Run with `python -m benchmarks.run --suite ci|full [--out DIR]` from the repository root.
"""
