-- Each charging point at the latest snapshot, with its static data (station, power).
SELECT s.id_pdc, s.status, s.last_updated, s.observed_at, s.address, s.arrondissement,
       s.lon, s.lat, p.station, p.station_id, p.power_kw
FROM belib_status s LEFT JOIN belib_points p ON p.id_pdc = s.id_pdc
WHERE s.observed_at = (SELECT max(observed_at) FROM belib_status)
