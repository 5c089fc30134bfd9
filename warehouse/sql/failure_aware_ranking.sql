-- failure_aware_ranking: a ranking no model wins by not answering, one row per model of a run.
-- Input: stg_judgments, judged_models, model_scores (scope 'all'). Grain: (run_id, model).
-- The study averages only over the evals a model appears in, so an answer it failed to give (empty:
-- its reasoning used the whole budget; an engine error; cut off with nothing a judge may see) simply
-- drops out. Here each such answer counts as the scale's minimum from every judge that would have
-- judged it (its judgment rows say 'no_answer'), so coverage is part of the score. Judge failures
-- (invalid, truncated or error verdicts) still don't count: they are the judge's, not the model's.
-- eval_score: mean of the valid scores and those minimums, rounded to 2 decimals half-to-even.
-- avg_score: mean of eval_score over the evals the model appears in, rounded likewise.
-- answers / failed_answers: distinct (eval, sample) answers with a score here / never given.
-- rank: by avg_score (unrounded), ties to the earlier card; models with no score last.
-- study_rank: the model's rank in rankings (the study's definition), for comparison.
-- Runs written before judgments stored scale_min count no minimums: there this equals rankings.
with scored as (
    select
        run_id,
        respondent as model,
        pool_index,
        eval_id,
        sample,
        status = 'no_answer' as failed,
        case when status = 'no_answer' then scale_min else score end as score
    from stg_judgments
    where valid or (status = 'no_answer' and scale_min is not null)
),

per_answer as (
    select run_id, model, eval_id, sample, bool_and(failed) as failed
    from scored
    group by run_id, model, eval_id, sample
),

per_eval as (
    select run_id, model, any_value(pool_index) as pool_index, eval_id, mean_2dp(score) as eval_score
    from scored
    group by run_id, model, eval_id
),

per_model as (
    select
        e.run_id,
        e.model,
        avg(e.eval_score) as mean_score,
        mean_2dp(e.eval_score) as avg_score,
        count(*) as evals
    from per_eval as e
    group by e.run_id, e.model
),

answers as (
    select run_id, model, count(*) as answers, count(*) filter (where failed) as failed_answers
    from per_answer
    group by run_id, model
),

study as (
    select run_id, model, rank from model_scores where scope = 'all'
),

final as (
    select
        row_number() over (
            partition by o.run_id order by p.mean_score desc nulls last, o.pool_index
        ) as rank,
        o.run_id,
        o.model,
        p.avg_score,
        coalesce(p.evals, 0) as evals,
        coalesce(a.answers, 0) as answers,
        coalesce(a.failed_answers, 0) as failed_answers,
        r.rank as study_rank
    from judged_models as o
    left join study as r using (run_id, model)
    left join per_model as p using (run_id, model)
    left join answers as a using (run_id, model)
)

select * from final order by run_id, rank
