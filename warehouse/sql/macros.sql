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
