-- Seed 004's daily footfall, with its documented semantics:
-- names lowercased, spaces to `_`, typos corrected to the closest known agency; readings kept
-- when positive (-1 closed, -10 broken dropped), counters 0..10, unit `visitors`; daily sums per
-- agency and counter; weekday 1 = Sunday .. 7 = Saturday; 4-same-weekday moving average, the
-- previous one, and the % change against it.
WITH clean AS (
  SELECT
    CAST(date_time AT TIME ZONE 'Europe/Paris' AS DATE) AS date,
    closest_match(
      replace(lower(agency_name), ' ', '_'),
      (SELECT array_agg(lower(agency_name)) FROM agencies)
    ) AS agency_name,
    counter_id,
    visitor_count,
    lower(unit) AS unit
  FROM footfall_events
  WHERE agency_name IS NOT NULL AND agency_name <> ''
    AND visitor_count > 0
    AND counter_id BETWEEN 0 AND 10
    AND lower(unit) = 'visitors'
), daily AS (
  SELECT date, agency_name, counter_id, unit,
         sum(visitor_count) AS daily_visitor_count,
         CAST(date_part('dow', date) AS BIGINT) + 1 AS weekday
  FROM clean
  GROUP BY date, agency_name, counter_id, unit
), moving AS (
  SELECT *,
         round(avg(daily_visitor_count) OVER (
           PARTITION BY agency_name, counter_id, weekday ORDER BY date
           ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)) AS avg_visits_4_weekday
  FROM daily
), previous AS (
  SELECT *,
         lag(avg_visits_4_weekday) OVER (
           PARTITION BY agency_name, counter_id, weekday ORDER BY date) AS prev_avg_4_visits
  FROM moving
)
SELECT date, agency_name, counter_id, unit, daily_visitor_count, weekday,
       avg_visits_4_weekday, prev_avg_4_visits,
       round(100 * (daily_visitor_count / prev_avg_4_visits - 1)) AS pct_change
FROM previous
