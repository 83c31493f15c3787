"""Benchmarks: run as ``python3 -m bench.<name>``, never as tests."""
