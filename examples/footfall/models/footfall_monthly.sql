-- Visits per agency, counter and month, from the daily table: the month's total, the days with
-- readings, and the daily average over those days.
SELECT
  CAST(date_trunc('month', date) AS DATE) AS month,
  agency_name,
  counter_id,
  sum(daily_visitor_count) AS visits,
  count(*) AS days_with_visits,
  round(avg(daily_visitor_count)) AS avg_daily_visits
FROM footfall_daily
GROUP BY 1, 2, 3
