"""sweep: peer-judged LLM eval sweeps as one command, from a laptop to a GPU cluster.

Data flows one way: config (sweep.core.config) -> plan of cells (sweep.plan) -> queue
(sweep.queue) + scheduling loop (sweep.run on Ray actors; sweep.forecast on the simulated clock
of the cost model, sweep.cost; both follow the policy in sweep.schedule) -> rows (jobs/, types in
sweep.core.rows) -> Parquet + DuckDB SQL (warehouse/) -> report. sweep.core is the leaf layer
every other package imports.
"""
