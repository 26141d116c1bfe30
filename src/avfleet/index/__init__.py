"""The index stage: recordings -> frame index (Parquet) + quarantine, from metadata only."""
