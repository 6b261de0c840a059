"""Micro-benchmarks of the pure core; run each with ``python -m bench.<name>``."""
