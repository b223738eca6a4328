-- The day's weather in Paris (days in Paris time) from the 3-hour steps of `weather_3h`:
-- a step belongs to the day of its time; its rain is that of the 3 hours it stands for.
SELECT CAST(time AT TIME ZONE 'Europe/Paris' AS DATE) AS date,
       min(temperature) AS temp_min,
       max(temperature) AS temp_max,
       round(sum(rain), 1) AS rain_mm,
       round(avg(wind_speed), 1) AS wind_avg,
       max(wind_speed) AS wind_max,
       max(wind_gusts) AS gust_max,
       count(*) AS steps
FROM weather_3h
GROUP BY 1
