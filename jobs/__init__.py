"""The work done on a worker, the "rows" step of config -> plan (cells) -> queue + loop (Ray or
simulated) -> rows -> SQL -> report: engines that turn requests into completions, and the
generation, judging and pairwise jobs that turn a batch of cells into warehouse rows. Imports only
the leaf layer (sweep.core) from sweep/."""
