"""sweep: peer-judged LLM eval sweeps as one command, from a laptop to a GPU cluster.

Data flows one way: config (sweep.core.config) -> plan of cells (sweep.plan) -> queue
(sweep.queue) + scheduling loop (sweep.scheduler: the policy of sweep.schedule, on Ray actors via
sweep.ray_backend in the live run, sweep.run; on the cost model's simulated clock, sweep.forecast
and sweep.cost, for the plan) -> rows (jobs/, types in sweep.core.rows) -> Parquet + DuckDB SQL
(warehouse/) -> report. sweep.core is the leaf layer
every other package imports.
"""
