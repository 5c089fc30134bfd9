-- stg_judgments: one row per judgment, flagged valid as the study defined it.
-- Input: raw_judgments. Grain: (run_id, judge, respondent, eval_id, sample).
-- valid: the verdict parsed (status = 'ok') and its weighted score is above 0 and at most
-- the scale's top. Invalid rows stay: valid/total counts every row. A cell written twice (retried)
-- counts once: its newest row (macro latest_rows).
-- _aggregated: the run's eval_judgments rows are stored (see eval_judgments); the judgments view
-- leaves this column out.
with latest as (
    select * from latest_rows('raw_judgments')
),

final as (
    select
        *,
        coalesce(status = 'ok' and score > 0 and score <= scale_max, false) as valid
    from latest
)

select * from final
