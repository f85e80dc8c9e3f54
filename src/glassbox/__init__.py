"""Glassbox: a tabular classifier served with its explanation, its metrics and a review queue."""

__version__ = "0.1.0"
