-- common_evals_ranking: the ranking over only the evals every ranked model appears in, one row per
-- model of a run; beside rankings, it shows whether a model led on a subset of (easier) evals.
-- Input: eval_scores, rankings, stg_judgments. Grain: (run_id, model).
-- Common evals: evals in which every model that appears in at least one eval of the run (has a valid
--   score) appears. Models with no valid score at all can't be ranked and don't shrink the set.
-- avg_score, wins, top3, evals: as in rankings, over the common evals only (eval_rank is unchanged:
--   in a common eval every ranked model appears). evals = the number of common evals.
-- rank: by avg_score (unrounded), ties to the earlier card; models with no score there last.
-- all_evals_rank, all_evals: the model's rank and evals in rankings, for comparison.
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

per_model as (
    select
        run_id,
        model,
        avg(eval_score) as mean_score,
        mean_2dp(eval_score) as avg_score,
        count(*) filter (where eval_rank = 1) as wins,
        count(*) filter (where eval_rank <= 3) as top3,
        count(*) as evals
    from scores
    semi join common using (run_id, eval_id)
    group by run_id, model
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
