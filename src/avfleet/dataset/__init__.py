"""Datasets: selected frames fetched by ranged reads, labeled, written as versioned Parquet."""
