-- model_scores: each model's eval scores summed up, over all its evals and over the common evals;
-- rankings and common_evals_ranking rank these rows.
-- Input: eval_scores. Grain: (run_id, scope, model).
-- scope: 'all' = every eval the model appears in (has a valid score); 'common' = only the evals in
--   which every model that appears in at least one eval of the run appears (models with no valid
--   score at all can't be ranked and don't shrink the set). eval_rank is unchanged by the scope: in
--   a common eval every ranked model appears.
-- mean_score: unrounded mean of eval_score (orders the ranks).
-- avg_score: that mean, rounded to 2 decimals half-to-even.
-- wins: evals where its eval_rank is 1. top3: evals where it is at most 3. evals: evals in scope.
-- avg_sigma: mean of the per-eval sigma (see eval_scores), rounded to 2 decimals half-to-even.
with scores as (
    select * from eval_scores
),

ranked as (
    select run_id, count(distinct model) as models
    from scores
    group by run_id
),

common as (
    select s.run_id, s.eval_id
    from scores as s
    inner join ranked as r using (run_id)
    group by s.run_id, s.eval_id, r.models
    having count(*) = r.models
),

scoped as (
    select 'all' as scope, * from scores
    union all
    select 'common' as scope, * from scores semi join common using (run_id, eval_id)
),

final as (
    select
        run_id,
        scope,
        model,
        avg(eval_score) as mean_score,
        mean_2dp(eval_score) as avg_score,
        count(*) filter (where eval_rank = 1) as wins,
        count(*) filter (where eval_rank <= 3) as top3,
        count(*) as evals,
        mean_2dp(sigma) as avg_sigma
    from scoped
    group by run_id, scope, model
)

select * from final
