-- stg_judgments: one row per judgment, flagged valid as the study defined it.
-- Input: raw_judgments. Grain: (run_id, judge, respondent, eval_id, sample).
-- valid: the verdict parsed (status = 'ok') and its weighted score is above 0 and at most
-- the scale's top. Invalid rows stay: valid/total counts every row.
with source as (
    select * from raw_judgments
),

latest as (
    select *
    from source
    qualify row_number() over (partition by run_id, cell_key order by created_at desc) = 1
),

final as (
    select
        *,
        coalesce(status = 'ok' and score > 0 and score <= scale_max, false) as valid
    from latest
)

select * from final
