"""Capture: the typed event schema, decoders and source adapters."""
