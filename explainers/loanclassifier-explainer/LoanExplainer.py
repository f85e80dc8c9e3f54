"""s2i class file: Seldon imports ``LoanExplainer`` from the module of the same name."""

from glassbox.explain.component import LoanExplainer

__all__ = ["LoanExplainer"]
