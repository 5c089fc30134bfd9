-- judge_leniency: how each judge scores, one row per judge of a run.
-- Input: stg_judgments. Grain: (run_id, judge).
-- mean_given: mean valid weighted score the judge gave (higher = more lenient).
-- valid_rate: valid judgments / all its judgment rows. The status counts add up to total.
with judgments as (
    select * from stg_judgments
),

final as (
    select
        run_id,
        judge,
        any_value(judge_family) as family,
        round_even(avg(score) filter (where valid), 2) as mean_given,
        count(*) filter (where valid) as valid,
        count(*) as total,
        round_even(count(*) filter (where valid) / count(*), 3) as valid_rate,
        count(*) filter (where status = 'ok') as ok,
        count(*) filter (where status = 'invalid') as invalid,
        count(*) filter (where status = 'truncated') as truncated,
        count(*) filter (where status = 'error') as error,
        count(*) filter (where status = 'no_answer') as no_answer
    from judgments
    group by run_id, judge
)

select * from final order by run_id, judge
