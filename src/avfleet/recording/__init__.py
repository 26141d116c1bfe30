"""Fleet recordings: the MCAP layout avfleet writes and a reader hardened against hostile files."""
