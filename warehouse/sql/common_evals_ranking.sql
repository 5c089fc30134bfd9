-- common_evals_ranking: the ranking over only the evals every ranked model appears in, one row per
-- model of a run; beside rankings, it shows whether a model led on a subset of (easier) evals.
-- Input: model_scores (scope 'common'), rankings, stg_judgments. Grain: (run_id, model).
-- avg_score, wins, top3, evals: as in rankings, over the common evals only (see model_scores for
--   which evals are common). evals = the number of common evals the model appears in.
-- rank: by avg_score (unrounded), ties to the earlier card; models with no score there last.
-- all_evals_rank, all_evals: the model's rank and evals in rankings, for comparison.
with per_model as (
    select * from model_scores where scope = 'common'
),

pool as (
    select run_id, respondent as model, any_value(pool_index) as pool_index
    from stg_judgments
    group by run_id, respondent
),

final as (
    select
        row_number() over (
            partition by r.run_id order by p.mean_score desc nulls last, o.pool_index
        ) as rank,
        r.run_id,
        r.model,
        p.avg_score,
        coalesce(p.wins, 0) as wins,
        coalesce(p.top3, 0) as top3,
        coalesce(p.evals, 0) as evals,
        r.rank as all_evals_rank,
        r.evals as all_evals
    from rankings as r
    inner join pool as o using (run_id, model)
    left join per_model as p using (run_id, model)
)

select * from final order by run_id, rank
