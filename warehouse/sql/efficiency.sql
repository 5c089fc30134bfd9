-- efficiency: the study's efficiency table, one row per model of a run.
-- Input: stg_generations, eval_scores. Grain: (run_id, model); over the evals the model
-- appears in (has a valid score), like the ranking.
-- avg_time_s: mean generation latency per eval (mean over samples), averaged over evals; seconds.
-- output_tokens_per_s: output tokens / generation seconds, summed over those evals.
-- score_per_sec: mean over evals of (eval_score / that eval's latency), as the study computed it.
-- avg_score_per_avg_time: avg_score / avg_time_s, a different quantity, labelled as such.
with generations as (
    select * from stg_generations
),

scores as (
    select * from eval_scores
),

per_eval as (
    select
        run_id,
        model,
        eval_id,
        avg(latency_s) as latency_s,
        sum(latency_s) as total_latency_s,
        sum(output_tokens) as output_tokens
    from generations
    group by run_id, model, eval_id
),

joined as (
    select
        p.*,
        s.eval_score,
        s.pool_index
    from per_eval as p
    inner join scores as s using (run_id, model, eval_id)
),

final as (
    select
        run_id,
        model,
        any_value(pool_index) as pool_index,
        avg(latency_s) as avg_time_s,
        sum(output_tokens) / nullif(sum(total_latency_s), 0) as output_tokens_per_s,
        avg(eval_score / nullif(latency_s, 0)) as score_per_sec,
        avg(eval_score) / nullif(avg(latency_s), 0) as avg_score_per_avg_time
    from joined
    group by run_id, model
)

select * from final order by run_id, pool_index
