"""Benchmarks run by ``scripts/bench``: figures printed with a baseline measured in the same run."""
