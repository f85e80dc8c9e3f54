"""Batch explanations and label audits on Ray (``glassbox explain-batch``)."""
