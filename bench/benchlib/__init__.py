"""Helpers of bench/bench.py: processes and ports, load generators, the report."""
