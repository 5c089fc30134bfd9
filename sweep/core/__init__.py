"""The leaf layer: what every other layer shares, importing no Ray, vLLM or DuckDB and nothing above it.

Config schema (config), errors (errors), cells and content keys (cells), what a model is shown
(prompts: messages, templates, verdict schemas, scrubbing, stop strings) and the rows a sweep writes
with their Arrow schema (rows). The planner (sweep), jobs/ and warehouse/ import it; it imports none of them.
"""
