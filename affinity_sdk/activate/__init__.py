"""Activate: segments, evaluation metrics and the HTML report."""
