"""Benchmarks: python -m bench.run (make bench) and python -m bench.scale."""
