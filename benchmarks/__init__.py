"""Benchmarks of crossmodal-search: ingestion and search against their baselines (``run.py``)."""
