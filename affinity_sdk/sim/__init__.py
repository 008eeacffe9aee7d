"""Simulated shops with ground truth, and real datasets (CDNOW)."""
