"""Ingest: columnar batches, interning, screening, dedupe and the one ingest pipeline."""
