-- Reads another model: runs after clean_visits whatever the names' order.
SELECT agency, day, sum(count) AS visits
FROM clean_visits
GROUP BY agency, day
