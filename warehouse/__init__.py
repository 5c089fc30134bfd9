"""The warehouse: Parquet tables on any fsspec store, and DuckDB SQL over them."""
