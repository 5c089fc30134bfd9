-- run_pairs: every ordered pair of two different runs, for the views that compare runs.
-- Input: raw_runs. Grain: (run_a, run_b).
with runs as (
    select distinct run_id from raw_runs
),

final as (
    select a.run_id as run_a, b.run_id as run_b
    from runs as a
    cross join runs as b
    where a.run_id <> b.run_id
)

select * from final
