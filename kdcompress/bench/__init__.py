"""Benchmarks: detection metrics, model size and cost, latency, reports."""
