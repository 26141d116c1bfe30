"""Shared core every stage uses: config, errors, storage, metrics, logging."""
