-- Exact half-to-even division of non-negative integers: num / den rounded to an integer,
-- ties to the even neighbour. The study rounds eval scores half-to-even; DuckDB's round()
-- rounds half away from zero, and round_even() on DOUBLE rounds the binary value
-- (1.015 -> 1.01), so scores are summed as integers and divided here.
create or replace macro div_half_even(num, den) as (
    num // den
    + case
        when 2 * (num % den) > den then 1
        when 2 * (num % den) = den and (num // den) % 2 = 1 then 1
        else 0
      end
);

-- Mean of scores with at most 6 decimals, rounded half-to-even to 2 decimals.
create or replace macro mean_2dp(x) as (
    div_half_even(sum(round(x * 1000000)::hugeint), count(x) * 10000)::decimal(18, 0) / 100
);

-- The same mean from an exact total (a DECIMAL sum of scores cast to decimal(18, 6)) and a count,
-- for means over groups of groups (others = all - this one); null when n = 0.
create or replace macro sum_2dp(total, n) as (
    div_half_even((total * 1000000)::hugeint, nullif(n, 0) * 10000)::decimal(18, 0) / 100
);

-- sum_2dp over the rest of a partition: every row of (run, part) but this one. For per-group rows of
-- (total, n), the mean of all the other groups' scores: the rest of the panel.
create or replace macro rest_2dp(total, n, run, part) as (
    sum_2dp(sum(total) over (partition by run, part) - total, sum(n) over (partition by run, part) - n)
);

-- A mean from an exact integer total of scores in millionths (round(score * 1000000)) and a count,
-- rounded half-to-even to 2 decimals: what mean_2dp gives, for totals summed at a finer grain first.
create or replace macro micro_2dp(total, n) as (
    div_half_even(total, nullif(n, 0) * 10000)::decimal(18, 0) / 100
);

-- The rows of a raw table (named as a string) that are the latest write of their cell: a retried cell
-- may have been written twice, and the newest row wins; rows written at the same instant go to the
-- later file name, then the later row, so the choice (and every sum over it) is the same on every run.
-- Rows of files marked _unique (their writer vouched no other live file holds their cells: the runner's
-- batches, a compacted run) pass through unless another file holds their cell too; only the other
-- rows, and those, go through the window, so a warehouse the runner wrote is read in one pass. No CTE
-- here: DuckDB materializes a CTE read twice, which reads every column of every file; written inline,
-- a query reads only the columns it uses, and when no file is doubtful the window folds away.
create or replace macro latest_rows(raw_table) as table
    select * exclude (filename, file_row_number, _unique)
    from query_table(raw_table)
    anti join (select distinct run_id, cell_key from query_table(raw_table) where not _unique) using (run_id, cell_key)
    where _unique
    union all by name
    select * exclude (filename, file_row_number, _unique)
    from (
        select * from query_table(raw_table) where not _unique
        union all by name
        select * from query_table(raw_table)
        semi join (select distinct run_id, cell_key from query_table(raw_table) where not _unique)
            using (run_id, cell_key)
        where _unique
    )
    qualify row_number() over (
        partition by run_id, cell_key order by created_at desc, filename desc, file_row_number desc
    ) = 1;
