"""Benchmarks that print one JSON line per scenario (``python -m bench``)."""
