"""sweep: peer-judged LLM eval sweeps as one command, from a laptop to a GPU cluster.

Data flows one way: config (sweep.core.config) -> plan of cells (sweep.plan) -> the run
(sweep.run: a scheduling loop over Ray actors; sweep.forecast: the same policy, sweep.schedule,
on the cost model's simulated clock, sweep.cost) -> rows (jobs/, types in sweep.core.rows) ->
Parquet + DuckDB SQL (warehouse/) -> report. sweep.core is the leaf layer everything imports.
"""
