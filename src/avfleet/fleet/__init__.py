"""Synthetic fleet: procedurally rendered drives written as MCAP recordings, and the oracle labeler."""
