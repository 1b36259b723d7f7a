"""Signals documents sends for whoever watches ingestion (config/metrics.py counts chunks embedded)."""

from django.dispatch import Signal

# Sent after a batch of chunks' embeddings is stored, with `count`: how many chunks.
chunks_embedded = Signal()
