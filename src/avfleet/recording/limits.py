"""Caps that bound what one hostile recording can make a reader allocate."""

from __future__ import annotations

import dataclasses

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReaderLimits:
    max_record_bytes: int = 64 * MiB
    """Largest record (header excluded) the reader loads; a longer one is an error."""
    max_chunk_decompressed_bytes: int = 64 * MiB
    """Largest decompressed chunk; checked against the declared size and while inflating."""
    max_summary_bytes: int = 16 * MiB
    """Largest summary section read by a metadata-only read."""
    max_total_decompressed_bytes: int = 2048 * MiB
    """Bytes a single full read may inflate in total (streams chunk by chunk)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"ReaderLimits.{field.name} must be positive")

    def peak_bytes(self) -> int:
        """Upper bound on the reader's live buffers for one file: a record plus its inflated chunk."""
        return self.max_record_bytes + self.max_chunk_decompressed_bytes + self.max_summary_bytes
