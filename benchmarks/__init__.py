"""Benchmarks of fleche against the tools users would pick instead (``python -m benchmarks``)."""
