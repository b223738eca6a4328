SELECT agency, count AS visits FROM visits WHERE count > 1000000
