-- eval_scores: each respondent's score and rank on each eval.
-- Input: eval_judgments. Grain: (run_id, model, eval_id); only evals where the model has
-- at least one valid score ("appears in the eval").
-- eval_score: mean of the valid weighted scores its answers got (all judges, all samples),
--   rounded to 2 decimals half-to-even (exact: the scores are summed as integers in millionths).
-- sigma: sample standard deviation (n - 1) of those scores, 0 when n < 2, rounded to 2 decimals.
-- valid_scores: how many valid scores.
-- eval_rank: 1 = best; ties go to the earlier card in the pool (pool_index).
-- eval_models: how many models appear in the eval (model_scores' common evals are those where all do).
with per_eval as (
    -- valid scores are all status 'ok': the 'ok' row of each (run, respondent, eval) holds them
    select
        run_id,
        respondent as model,
        pool_index,
        eval_id,
        micro_2dp(micro_sum, valid_scores) as eval_score,
        round_even(coalesce(sigma, 0), 2) as sigma,
        valid_scores
    from eval_judgments
    where status = 'ok' and valid_scores > 0
),

final as (
    select
        *,
        row_number() over evals as eval_rank,
        count(*) over (partition by run_id, eval_id) as eval_models
    from per_eval
    window evals as (partition by run_id, eval_id order by eval_score desc, pool_index)
)

select * from final
