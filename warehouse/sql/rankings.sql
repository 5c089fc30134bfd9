-- rankings: the study's ranking table, one row per model of a run.
-- Input: eval_scores, stg_judgments. Grain: (run_id, model).
-- avg_score: unweighted mean of the model's eval scores over the evals it appears in,
--   rounded to 2 decimals half-to-even.
-- wins: evals where its eval_rank is 1. top3: evals where it is at most 3. evals: evals it appears in.
-- avg_sigma: mean over those evals of the per-eval sigma (see eval_scores), rounded to 2 decimals
--   half-to-even.
-- valid_judgments / total_judgments: judgment rows about its answers, valid and all.
-- rank: by avg_score (unrounded), ties to the earlier card; models with no valid score last.
with scores as (
    select * from eval_scores
),

judged as (
    select
        run_id,
        respondent as model,
        any_value(pool_index) as pool_index,
        count(*) filter (where valid) as valid_judgments,
        count(*) as total_judgments
    from stg_judgments
    group by run_id, respondent
),

per_model as (
    select
        run_id,
        model,
        avg(eval_score) as mean_score,
        mean_2dp(eval_score) as avg_score,
        count(*) filter (where eval_rank = 1) as wins,
        count(*) filter (where eval_rank <= 3) as top3,
        count(*) as evals,
        mean_2dp(sigma) as avg_sigma
    from scores
    group by run_id, model
),

final as (
    select
        row_number() over (
            partition by j.run_id order by p.mean_score desc nulls last, j.pool_index
        ) as rank,
        j.run_id,
        j.model,
        p.avg_score,
        coalesce(p.wins, 0) as wins,
        coalesce(p.top3, 0) as top3,
        coalesce(p.evals, 0) as evals,
        p.avg_sigma,
        j.valid_judgments,
        j.total_judgments
    from judged as j
    left join per_model as p using (run_id, model)
)

select * from final order by run_id, rank
