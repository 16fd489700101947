"""Performance benchmark of the course helpers: `python -m benchmarks.run` (see README.md)."""
