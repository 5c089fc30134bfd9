-- rankings: the study's ranking table, one row per model of a run.
-- Input: model_scores (scope 'all'), judged_models, stg_generations. Grain: (run_id, model).
-- avg_score, wins, top3, evals, avg_sigma: over every eval the model appears in (see model_scores):
--   the unweighted mean of its eval scores rounded to 2 decimals half-to-even; evals where its
--   eval_rank is 1 / at most 3; the number of those evals; the mean per-eval sigma.
-- valid_judgments / total_judgments: judgment rows about its answers, valid and all.
-- rank: by avg_score (unrounded), ties to the earlier card; null for a model with no valid score,
--   listed last with unranked = why: 'no valid score; answers: <status n, ...>; judgments: <status n, ...>'
--   (statuses of its answers and of the judgments about them, alphabetical). unranked is null when ranked.
with per_model as (
    select * from model_scores where scope = 'all'
),

answers as (
    select run_id, model, string_agg(status || ' ' || n, ', ' order by status) as answer_statuses
    from (select run_id, model, status, count(*) as n from stg_generations group by all)
    group by run_id, model
),

final as (
    select
        p.rank,
        j.run_id,
        j.model,
        p.avg_score,
        coalesce(p.wins, 0) as wins,
        coalesce(p.top3, 0) as top3,
        coalesce(p.evals, 0) as evals,
        p.avg_sigma,
        j.valid_judgments,
        j.total_judgments,
        case when p.mean_score is null then 'no valid score; ' || nullif(concat_ws('; ',
            'answers: ' || a.answer_statuses, 'judgments: ' || j.judgment_statuses), '') end as unranked,
        j.pool_index
    from judged_models as j
    left join per_model as p using (run_id, model)
    left join answers as a using (run_id, model)
)

select * exclude (pool_index) from final order by run_id, rank nulls last, pool_index
