-- The day's weather in Paris (days in Paris time) from the 3-hour steps of `weather_3h`:
-- temperatures and wind are the step's instant, so a step counts for the day of its time; rain
-- is the sum over the 3 hours before the step (Open-Meteo's convention), so it counts for the
-- day those hours began in (the 00:00 step's rain is the previous evening's).
WITH instants AS (
  SELECT CAST(time AT TIME ZONE 'Europe/Paris' AS DATE) AS date,
         min(temperature) AS temp_min,
         max(temperature) AS temp_max,
         round(avg(wind_speed), 1) AS wind_avg,
         max(wind_speed) AS wind_max,
         max(wind_gusts) AS gust_max,
         count(*) AS steps
  FROM weather_3h GROUP BY 1
),
rain AS (
  SELECT CAST((time - INTERVAL '3 hours') AT TIME ZONE 'Europe/Paris' AS DATE) AS date,
         round(sum(rain), 1) AS rain_mm
  FROM weather_3h GROUP BY 1
)
SELECT i.date, i.temp_min, i.temp_max, r.rain_mm, i.wind_avg, i.wind_max, i.gust_max, i.steps
FROM instants i LEFT JOIN rain r ON r.date = i.date
