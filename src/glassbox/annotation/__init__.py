"""The annotation queue: intake, review, agreement, feedback, label audit and export (docs/annotation.md)."""
