-- efficiency_frontier: score against latency, one row per ranked model of a run, with the models
-- on the efficiency frontier marked.
-- Input: rankings, efficiency. Grain: (run_id, model); models with an avg_score.
-- avg_score: as in rankings; avg_time_s: as in efficiency (seconds).
-- on_frontier: no other model of the run beats it on both, i.e. none has an avg_score at least as
--   high and an avg_time_s at least as low with one of the two strictly better (Pareto-optimal).
with points as (
    select
        r.run_id,
        r.model,
        r.rank,
        e.pool_index,
        r.avg_score,
        e.avg_time_s
    from rankings as r
    inner join efficiency as e using (run_id, model)
    where r.avg_score is not null
),

final as (
    select
        p.*,
        not exists (
            select 1
            from points as o
            where o.run_id = p.run_id
                and o.avg_score >= p.avg_score
                and o.avg_time_s <= p.avg_time_s
                and (o.avg_score > p.avg_score or o.avg_time_s < p.avg_time_s)
        ) as on_frontier
    from points as p
)

select * from final order by run_id, avg_time_s
