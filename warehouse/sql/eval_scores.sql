-- eval_scores: each respondent's score and rank on each eval.
-- Input: stg_judgments. Grain: (run_id, model, eval_id); only evals where the model has
-- at least one valid score ("appears in the eval").
-- eval_score: mean of the valid weighted scores its answers got (all judges, all samples),
--   rounded to 2 decimals half-to-even.
-- sigma: sample standard deviation (n - 1) of those scores, 0 when n < 2, rounded to 2 decimals.
-- eval_rank: 1 = best; ties go to the earlier card in the pool (pool_index).
with valid as (
    select * from stg_judgments where valid
),

per_eval as (
    select
        run_id,
        respondent as model,
        any_value(pool_index) as pool_index,
        eval_id,
        mean_2dp(score) as eval_score,
        round_even(coalesce(stddev_samp(score), 0), 2) as sigma,
        count(*) as valid_scores
    from valid
    group by run_id, respondent, eval_id
),

final as (
    select
        *,
        row_number() over (partition by run_id, eval_id order by eval_score desc, pool_index) as eval_rank
    from per_eval
)

select * from final
