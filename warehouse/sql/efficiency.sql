-- efficiency: the study's efficiency table, one row per model of a run, with API cost.
-- Input: stg_generations, stg_judgments, stg_comparisons, eval_scores. Grain: (run_id, model); over the evals
-- the model appears in (has a valid score), like the ranking; judging cost over the whole run.
-- avg_time_s: mean generation latency per eval (mean over samples), averaged over evals; seconds.
-- output_tokens_per_s: output tokens / generation seconds, summed over those evals.
-- score_per_sec: mean over evals of (eval_score / that eval's latency), as the study computed it.
-- avg_score_per_avg_time: avg_score / avg_time_s, a different quantity, labelled as such.
-- answer_cost_usd: USD its answers cost over those evals (re-asks included); null for local
--   engines and API cards without a price.
-- judge_cost_usd: USD the judgments and pairwise verdicts it made cost over the run; null likewise.
-- cost_per_point_usd: answer cost per eval / avg_score = USD per point of score.
with generations as (
    select * from stg_generations
),

verdicts as (
    select run_id, judge, cost_usd from stg_judgments
    union all
    select run_id, judge, cost_usd from stg_comparisons
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
        sum(output_tokens) as output_tokens,
        sum(cost_usd) as cost_usd
    from generations
    group by run_id, model, eval_id
),

judging as (
    select
        run_id,
        judge as model,
        sum(cost_usd) as judge_cost_usd
    from verdicts
    group by run_id, judge
),

joined as (
    select
        p.*,
        s.eval_score,
        s.pool_index
    from per_eval as p
    inner join scores as s using (run_id, model, eval_id)
),

per_model as (
    select
        run_id,
        model,
        any_value(pool_index) as pool_index,
        avg(latency_s) as avg_time_s,
        sum(output_tokens) / nullif(sum(total_latency_s), 0) as output_tokens_per_s,
        avg(eval_score / nullif(latency_s, 0)) as score_per_sec,
        avg(eval_score) / nullif(avg(latency_s), 0) as avg_score_per_avg_time,
        sum(cost_usd) as answer_cost_usd,
        avg(cost_usd) / nullif(avg(eval_score), 0) as cost_per_point_usd
    from joined
    group by run_id, model
),

final as (
    select
        m.run_id,
        m.model,
        m.pool_index,
        m.avg_time_s,
        m.output_tokens_per_s,
        m.score_per_sec,
        m.avg_score_per_avg_time,
        m.answer_cost_usd,
        j.judge_cost_usd,
        m.cost_per_point_usd
    from per_model as m
    left join judging as j using (run_id, model)
)

select * from final order by run_id, pool_index
