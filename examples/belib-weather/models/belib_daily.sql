-- Per day (Paris time) and arrondissement, over the day's snapshots (one an hour):
--   snapshots          snapshots that day
--   points             charging points seen that day
--   reported           points per snapshot, on average
--   available          points `Disponible`, on average per snapshot
--   occupied           points charging (`Occupé (en charge)`), on average
--   reserved           points `Réservé`, on average
--   out_of_order       every other status (`En maintenance`, `Inconnu`, `En cours de mise en
--                      service`, ...), on average
--   availability_rate  available / reported (0 to 1)
SELECT date, arrondissement,
       count(DISTINCT observed_at) AS snapshots,
       count(DISTINCT id_pdc) AS points,
       CAST(count(*) AS DOUBLE) / count(DISTINCT observed_at) AS reported,
       sum(CASE WHEN status = 'Disponible' THEN 1.0 ELSE 0.0 END) / count(DISTINCT observed_at) AS available,
       sum(CASE WHEN status = 'Occupé (en charge)' THEN 1.0 ELSE 0.0 END) / count(DISTINCT observed_at) AS occupied,
       sum(CASE WHEN status = 'Réservé' THEN 1.0 ELSE 0.0 END) / count(DISTINCT observed_at) AS reserved,
       sum(CASE WHEN status IN ('Disponible', 'Occupé (en charge)', 'Réservé') THEN 0.0 ELSE 1.0 END) / count(DISTINCT observed_at) AS out_of_order,
       avg(CASE WHEN status = 'Disponible' THEN 1.0 ELSE 0.0 END) AS availability_rate
FROM (
  SELECT CAST(observed_at AT TIME ZONE 'Europe/Paris' AS DATE) AS date,
         coalesce(arrondissement, 'unknown') AS arrondissement, observed_at, id_pdc, status
  FROM belib_status
)
GROUP BY date, arrondissement
