-- eval_judgments: the judgments about each answer set of a run, summed up; eval_scores and
-- judged_models read these rows instead of the judgments.
-- Input: raw_eval_judgments (stored at compaction), stg_judgments. Grain: (run_id, respondent, eval_id, status).
-- pool_index: the respondent's position in the pool.
-- judgments: judgment rows with this status. valid_scores: those that are valid (see stg_judgments; only
--   status 'ok' has any).
-- micro_sum: sum of the valid scores in millionths (round(score * 1000000), exact: scores have at most
--   6 decimals). sigma: sample standard deviation of the valid scores, unrounded; null when under 2.
-- A compacted run's rows are stored (python -m warehouse compact writes them with the list of judgment
-- files they sum); connect() reads them only while that list is still the run's live judgment files,
-- and sums the rows of every other run here (stg_judgments._aggregated is false for those).
with computed as (
    select
        run_id,
        respondent,
        eval_id,
        status,
        any_value(pool_index) as pool_index,
        count(*) as judgments,
        count(*) filter (where valid) as valid_scores,
        -- exact in BIGINT (a cell's scores would need 10^11 rows to overflow it), and far cheaper than HUGEINT
        sum(round(score * 1000000)::bigint) filter (where valid)::bigint as micro_sum,
        stddev_samp(score) filter (where valid) as sigma
    from stg_judgments
    where not _aggregated
    group by run_id, respondent, eval_id, status
),

final as (
    select run_id, respondent, eval_id, status, pool_index, judgments, valid_scores, micro_sum, sigma
    from raw_eval_judgments
    union all
    select * from computed
)

select * from final
