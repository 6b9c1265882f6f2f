"""Facts: the large, append-only store (Parquet partitioned by kind and day, read by DuckDB)."""
