"""Benchmarks of retab-mcp against the alternatives: `python -m bench`, see bench/run.py
and docs/benchmarks.md. Not part of the package, not run by the test suite (but for one smoke run)."""
