"""sweep: peer-judged LLM eval sweeps as one command, from a laptop to a GPU cluster.

Data flows one way: config (sweep.config) -> plan (sweep.plan) -> Ray task graph
(sweep.runner) -> rows (jobs/) -> Parquet + DuckDB SQL (warehouse/) -> report.
"""
