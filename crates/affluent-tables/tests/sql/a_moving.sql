-- Moving average over this row and the 3 previous, the previous average, % change; named so
-- that it sorts before the model it reads.
WITH w AS (
  SELECT agency, day, visits,
         round(avg(visits) OVER (PARTITION BY agency ORDER BY day ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)) AS avg4
  FROM daily
)
SELECT agency, day, visits, avg4,
       lag(avg4) OVER (PARTITION BY agency ORDER BY day) AS prev_avg4,
       round(100 * (visits / lag(avg4) OVER (PARTITION BY agency ORDER BY day) - 1)) AS pct_change
FROM w
