-- rankings: the study's ranking table, one row per model of a run.
-- Input: model_scores (scope 'all'), stg_judgments. Grain: (run_id, model).
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

statuses as (
    select run_id, model, 'answers' as what, status, count(*) as n from stg_generations group by all
    union all
    select run_id, respondent as model, 'judgments' as what, status, count(*) as n from stg_judgments group by all
),

reasons as (
    select run_id, model, 'no valid score; ' || string_agg(what || ': ' || counts, '; ' order by what) as unranked
    from (
        select run_id, model, what, string_agg(status || ' ' || n, ', ' order by status) as counts
        from statuses group by run_id, model, what
    )
    group by run_id, model
),

final as (
    select
        case when p.mean_score is not null then row_number() over (
            partition by j.run_id order by p.mean_score desc nulls last, j.pool_index
        ) end as rank,
        j.run_id,
        j.model,
        p.avg_score,
        coalesce(p.wins, 0) as wins,
        coalesce(p.top3, 0) as top3,
        coalesce(p.evals, 0) as evals,
        p.avg_sigma,
        j.valid_judgments,
        j.total_judgments,
        case when p.mean_score is null then r.unranked end as unranked,
        j.pool_index
    from judged as j
    left join per_model as p using (run_id, model)
    left join reasons as r using (run_id, model)
)

select * exclude (pool_index) from final order by run_id, rank nulls last, pool_index
