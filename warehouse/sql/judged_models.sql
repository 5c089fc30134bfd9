-- judged_models: every model of a run whose answers have judgment rows, with how they were judged.
-- Input: eval_judgments. Grain: (run_id, model). Shared by rankings, common_evals_ranking and
-- failure_aware_ranking (the models they list, and the ties).
-- pool_index: the card's position in the pool (ties in every ranking go to the earlier card).
-- valid_judgments / total_judgments: judgment rows about its answers, valid (see stg_judgments) and all.
-- judgment_statuses: 'status n, ...' over those rows, alphabetical (why a model is unranked).
with per_status as (
    select
        run_id,
        respondent as model,
        status,
        any_value(pool_index) as pool_index,
        sum(valid_scores) as valid_judgments,
        sum(judgments) as total_judgments
    from eval_judgments
    group by run_id, respondent, status
),

final as (
    select
        run_id,
        model,
        any_value(pool_index) as pool_index,
        sum(valid_judgments)::bigint as valid_judgments,
        sum(total_judgments)::bigint as total_judgments,
        string_agg(status || ' ' || total_judgments, ', ' order by status) as judgment_statuses
    from per_status
    group by run_id, model
)

select * from final
