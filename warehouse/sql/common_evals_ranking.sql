-- common_evals_ranking: the ranking over only the evals every ranked model appears in, one row per
-- model of a run; beside rankings, it shows whether a model led on a subset of (easier) evals.
-- Input: model_scores (both scopes), judged_models. Grain: (run_id, model).
-- avg_score, wins, top3, evals: as in rankings, over the common evals only (see model_scores for
--   which evals are common). evals = the number of common evals the model appears in.
-- rank: by avg_score (unrounded), ties to the earlier card; models with no score there last.
-- all_evals_rank, all_evals: the model's rank and evals in rankings, for comparison.
with scopes as (
    select
        run_id,
        model,
        any_value(mean_score) filter (where scope = 'common') as mean_score,
        any_value(avg_score) filter (where scope = 'common') as avg_score,
        any_value(wins) filter (where scope = 'common') as wins,
        any_value(top3) filter (where scope = 'common') as top3,
        any_value(evals) filter (where scope = 'common') as evals,
        any_value(rank) filter (where scope = 'all') as all_evals_rank,
        any_value(evals) filter (where scope = 'all') as all_evals
    from model_scores
    group by run_id, model
),

final as (
    select
        row_number() over (
            partition by o.run_id order by p.mean_score desc nulls last, o.pool_index
        ) as rank,
        o.run_id,
        o.model,
        p.avg_score,
        coalesce(p.wins, 0) as wins,
        coalesce(p.top3, 0) as top3,
        coalesce(p.evals, 0) as evals,
        p.all_evals_rank,
        coalesce(p.all_evals, 0) as all_evals
    from judged_models as o
    left join scopes as p using (run_id, model)
)

select * from final order by run_id, rank
