"""The warehouse, the "SQL -> report" end of config -> plan (cells) -> queue + loop (Ray or
simulated) -> rows -> SQL -> report: Parquet tables on any fsspec store (row types in
sweep.core.rows), DuckDB views and SQL over them, the judging statistics and the reports. Imports
only the leaf layer (sweep.core) from sweep/."""
