"""s2i class file: Seldon imports ``LoanClassifier`` from the module of the same name."""

from glassbox.serving.component import LoanClassifier

__all__ = ["LoanClassifier"]
