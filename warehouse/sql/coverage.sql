-- coverage: which (model, eval) cells of a run have a usable result, one row per cell.
-- Input: raw_runs (the pool), stg_generations, stg_judgments, eval_scores.
-- Grain: (run_id, model, eval_id): every card of the run's pool x every eval the run has an answer
-- or a judgment row for.
-- cell_status: 'missing' = no answer row; 'failed' = an answer has status error or empty, or no
--   judgment of the cell's answers is valid; else 'ok'. reason says which, for the ones not ok.
-- answers, valid_judgments, judgments: rows behind the cell. eval_score: as in eval_scores.
with pool as (
    select
        run_id,
        unnest(pool) as model,
        unnest(range(len(pool))) as pool_index
    from raw_runs
),

evals as (
    select distinct run_id, eval_id from stg_generations
    union
    select distinct run_id, eval_id from stg_judgments
),

answers as (
    select
        run_id,
        model,
        eval_id,
        count(*) as answers,
        string_agg(distinct status, ', ' order by status) filter (where status in ('error', 'empty')) as failed_as
    from stg_generations
    group by run_id, model, eval_id
),

judged as (
    select
        run_id,
        respondent as model,
        eval_id,
        count(*) filter (where valid) as valid_judgments,
        count(*) as judgments
    from stg_judgments
    group by run_id, respondent, eval_id
),

final as (
    select
        p.run_id,
        p.model,
        p.pool_index,
        e.eval_id,
        coalesce(a.answers, 0) as answers,
        coalesce(j.valid_judgments, 0) as valid_judgments,
        coalesce(j.judgments, 0) as judgments,
        s.eval_score,
        case
            when a.answers is null then 'missing'
            when a.failed_as is not null or coalesce(j.valid_judgments, 0) = 0 then 'failed'
            else 'ok'
        end as cell_status,
        case
            when a.answers is null then 'no answer row'
            when a.failed_as is not null then 'answer ' || a.failed_as
            when coalesce(j.valid_judgments, 0) = 0 then 'no valid judgment'
        end as reason
    from pool as p
    inner join evals as e using (run_id)
    left join answers as a using (run_id, model, eval_id)
    left join judged as j using (run_id, model, eval_id)
    left join eval_scores as s using (run_id, model, eval_id)
)

select * from final order by run_id, pool_index, eval_id
