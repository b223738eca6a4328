SELECT a.name AS from_agency, b.name AS to_agency, round(haversine_km(a.lat, a.lon, b.lat, b.lon)) AS km
FROM agencies a JOIN agencies b ON a.name < b.name
