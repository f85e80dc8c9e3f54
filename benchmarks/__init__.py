"""Benchmarks: `make bench` runs each part's `run()` and writes JSON + Markdown to benchmarks/results/."""
