-- model_scores: each model's eval scores summed up, over all its evals and over the common evals;
-- rankings and common_evals_ranking read these rows.
-- Input: eval_scores. Grain: (run_id, scope, model).
-- scope: 'all' = every eval the model appears in (has a valid score); 'common' = only the evals in
--   which every model that appears in at least one eval of the run appears (models with no valid
--   score at all can't be ranked and don't shrink the set). eval_rank is unchanged by the scope: in
--   a common eval every ranked model appears. A model with no common eval has no 'common' row.
-- mean_score: unrounded mean of eval_score (orders the ranks), from the exact sum.
-- avg_score: that mean, rounded to 2 decimals half-to-even.
-- wins: evals where its eval_rank is 1. top3: evals where it is at most 3. evals: evals in scope.
-- avg_sigma: mean of the per-eval sigma (see eval_scores), rounded to 2 decimals half-to-even.
-- rank: by mean_score within (run_id, scope), ties to the earlier card (pool_index).
-- One pass over eval_scores: it is summed per (model, number of models in the eval) first, a few
-- rows per model, and both scopes are sums of those rows.
with per_size as (
    select
        run_id,
        model,
        eval_models,
        any_value(pool_index) as pool_index,
        count(*) as evals,
        -- eval scores and sigmas have 2 decimals: summed exactly as integers in hundredths
        sum(round(eval_score * 100)::bigint) as score_cents,
        sum(round(sigma * 100)::bigint) as sigma_cents,
        count(*) filter (where eval_rank = 1) as wins,
        count(*) filter (where eval_rank <= 3) as top3
    from eval_scores
    group by run_id, model, eval_models
),

sized as (
    select
        *,
        eval_models = count(distinct model) over (partition by run_id) as common
    from per_size
),

scoped as (
    select s.scope, sized.*
    from sized
    cross join (values ('all'), ('common')) as s (scope)
    where s.scope = 'all' or sized.common
),

per_model as (
    select
        run_id,
        scope,
        model,
        any_value(pool_index) as pool_index,
        sum(score_cents)::bigint / sum(evals) / 100 as mean_score,
        div_half_even(sum(score_cents)::bigint, sum(evals)::bigint)::decimal(18, 0) / 100 as avg_score,
        sum(wins)::bigint as wins,
        sum(top3)::bigint as top3,
        sum(evals)::bigint as evals,
        div_half_even(sum(sigma_cents)::bigint, sum(evals)::bigint)::decimal(18, 0) / 100 as avg_sigma
    from scoped
    group by run_id, scope, model
),

final as (
    select
        run_id,
        scope,
        model,
        mean_score,
        avg_score,
        wins,
        top3,
        evals,
        avg_sigma,
        row_number() over (partition by run_id, scope order by mean_score desc, pool_index) as rank,
        pool_index
    from per_model
)

select * from final
