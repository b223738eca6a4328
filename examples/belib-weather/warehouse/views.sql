-- Views for BI tools (Grafana, Metabase, Superset, Power BI) over the tables the `warehouse`
-- sink writes into the schema `belib`. Create them once the first sync has created the tables:
--   psql "$BELIB_WAREHOUSE_URL" -v ON_ERROR_STOP=1 -f examples/belib-weather/warehouse/views.sql
-- They name their columns one by one, so a column the sink adds later (a new nullable column of
-- a model) does not change them. PostgreSQL refuses to change the type of a column a view
-- reads: if the sink reports it cannot widen a column, drop these views, sync, and run this
-- file again.

-- The whole city per day: availability against the day's weather.
CREATE OR REPLACE VIEW belib.v_paris_daily AS
SELECT b.date,
       sum(b.points) AS points,
       round((100 * sum(b.available) / nullif(sum(b.reported), 0))::numeric, 1) AS available_pct,
       round(sum(b.occupied)::numeric, 1) AS occupied,
       round(sum(b.out_of_order)::numeric, 1) AS out_of_order,
       w.temp_min, w.temp_max, w.rain_mm, w.wind_max
FROM belib.belib_daily b
LEFT JOIN belib.weather_daily w ON w.date = b.date
GROUP BY b.date, w.temp_min, w.temp_max, w.rain_mm, w.wind_max;
COMMENT ON VIEW belib.v_paris_daily IS
  'Belib'' points per day in Paris: available share (%) of the reported points, averages over the day''s hourly snapshots, and the day''s weather (Open-Meteo).';

-- Per arrondissement and day, with the weather (the seed's table, readable units).
CREATE OR REPLACE VIEW belib.v_arrondissement_daily AS
SELECT date, arrondissement, points, round(reported::numeric, 1) AS reported,
       round((100 * availability_rate)::numeric, 1) AS available_pct,
       round(available::numeric, 1) AS available,
       round(occupied::numeric, 1) AS occupied,
       round(out_of_order::numeric, 1) AS out_of_order,
       temp_min, temp_max, rain_mm, wind_avg, wind_max
FROM belib.belib_weather_daily;
COMMENT ON VIEW belib.v_arrondissement_daily IS
  'Belib'' availability per day and arrondissement (Paris time) with the day''s weather.';

-- Dry days against rainy days (at least 1 mm).
CREATE OR REPLACE VIEW belib.v_rain_effect AS
SELECT CASE WHEN w.rain_mm >= 1 THEN 'rain' ELSE 'dry' END AS day_kind,
       count(DISTINCT b.date) AS days,
       round((100 * sum(b.available) / nullif(sum(b.reported), 0))::numeric, 1) AS available_pct
FROM belib.belib_daily b
JOIN belib.weather_daily w ON w.date = b.date
GROUP BY 1;
COMMENT ON VIEW belib.v_rain_effect IS 'Average Belib'' availability on dry and on rainy days.';

-- Every point at the latest snapshot, with its station and power.
CREATE OR REPLACE VIEW belib.v_latest_points AS
SELECT s.id_pdc, s.status, s.last_updated, s.observed_at, s.arrondissement, s.address,
       s.lon, s.lat, p.station, p.power_kw
FROM belib.belib_status s
LEFT JOIN belib.belib_points p ON p.id_pdc = s.id_pdc
WHERE s.observed_at = (SELECT max(observed_at) FROM belib.belib_status);
COMMENT ON VIEW belib.v_latest_points IS 'Each Belib'' charging point at the latest hourly snapshot.';
