"""The work done on a worker: engines that turn requests into completions, and the
generation and judging jobs that turn cells into warehouse rows."""
