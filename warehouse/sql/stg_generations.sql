-- stg_generations: one row per answer, the latest write of each cell.
-- Input: raw_generations (the Parquet files). Grain: (run_id, model, eval_id, sample).
-- Units: latency_s, ttft_s, queue_s in seconds; tokens as counted by the engine's tokenizer.
-- A retried cell may have been written twice; the newest row wins (macro latest_rows).
with final as (
    select * from latest_rows('raw_generations')
)

select * from final
