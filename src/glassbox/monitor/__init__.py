"""Drift and outlier monitoring of live traffic (the monitor component)."""
