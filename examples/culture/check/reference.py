#!/usr/bin/env python3
"""Checks examples/culture against independent computations (pandas, statsmodels, scikit-learn).

1. Runs the example offline (`affluent demo --no-run --until`: every source replays its
   cassette) on a copy of the project, and exports its tables (`affluent export`).
2. pandas reads the cassettes' answers as the seed's scripts read the APIs' and summarizes them
   the seed's way: events (name, type, local date, venue, city, country, first price range,
   public sale start; one per name and date), matches (home, away, date, status, competition,
   scores, winner / loser / draw for each team; one per home, away and date), economy
   (country, indicator, value, year): affluent's tables must hold the same rows and values.
   The standings (3 points a win, 1 a draw, ranked by points, goal difference, goals) and the
   GDP growth are computed again from those rows.
3. The alert on unusual GDP growth, again in pandas: per country, year after year, the robust
   z-score (0.6745 (x - median) / MAD) of the growth against the previous 8 years (at least 3),
   firing when beyond 3.5 and not again until it has fallen back: every firing, its year and
   its French message must be affluent's, and affluent must have no other.
4. statsmodels: each country's GDP against the year, ordinary least squares, and the forecast
   of the next 5 years with its 95 % prediction interval (`get_prediction().summary_frame`):
   every forecast, lower and upper bound within a relative 1e-6 of affluent's `gdp_forecast`.
5. scikit-learn's IsolationForest (1,000 trees, the same sample size) on the same rows as
   `gdp_anomalies` and `city_anomalies`: the two forests are grown from different random draws,
   so the scores are compared by rank (Spearman correlation at least 0.8), and the rows each
   flags most strongly must agree (affluent's top-scored row is among scikit-learn's top 3).

Usage: examples/culture/check/reference.py [AFFLUENT_BINARY]
(default: the debug binary of CARGO_TARGET_DIR or target/). pandas, statsmodels, scikit-learn
and pyarrow are installed with pip in a virtualenv under ~/.cache/affluent on first use. Exit
status 0 when everything matches.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import venv

PACKAGES = ["numpy==2.1.3", "scipy==1.14.1", "pandas==2.2.3", "scikit-learn==1.5.2", "statsmodels==0.14.4",
            "pyarrow==18.1.0"]
UNTIL = "2026-12-04T12:00"
HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(EXAMPLE))


def python_with_packages() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    env = os.path.join(cache, "affluent", "culture-check")
    python = os.path.join(env, "bin", "python")
    if not os.path.exists(os.path.join(env, ".ready")):
        venv.create(env, with_pip=True, clear=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *PACKAGES], check=True)
        open(os.path.join(env, ".ready"), "w").close()
    return python


def binary() -> str:
    if len(sys.argv) > 1:
        return os.path.abspath(sys.argv[1])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "debug", "affluent")


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def fr_num(x):
    """Two decimals, trailing zeros dropped, as affluent's `{name:num}`."""
    text = f"{abs(x):,.2f}".replace(",", " ").replace(".", ",")
    text = text.rstrip("0").rstrip(",")
    sign = "-" if x < 0 and text != "0" else ""
    return sign + text


def answers(name):
    with open(os.path.join(EXAMPLE, "cassettes", name), encoding="utf-8") as f:
        return [i["body"] for i in json.load(f)["interactions"]]


# ---------------------------------------------------------------------------------------------
# The seed's summaries (its summarize_data functions), over the cassettes' answers.

def seed_events(pd):
    rows = {}
    for body in answers("events.json"):
        for e in body.get("_embedded", {}).get("events", []):
            venue = (e.get("_embedded", {}).get("venues") or [{}])[0]
            price = (e.get("priceRanges") or [None])[0] or {}
            row = {
                "name": e.get("name"),
                "type": e.get("type"),
                "date": e.get("dates", {}).get("start", {}).get("localDate"),
                "venue": venue.get("name"),
                "city": venue.get("city", {}).get("name"),
                "country": venue.get("country", {}).get("name"),
                "price_min": price.get("min"),
                "price_max": price.get("max"),
                "sale_start": e.get("sales", {}).get("public", {}).get("startDateTime"),
            }
            # update_one({'name', 'dates'}, {'$set': ...}, upsert=True): the last one wins.
            rows[(row["name"], row["date"])] = row
    return pd.DataFrame(list(rows.values()))


def seed_matches(pd):
    rows = {}
    for body in answers("matches.json"):
        for m in body["matches"]:
            winner = m["score"]["winner"]
            home, away = {"HOME_TEAM": ("winner", "loser"), "AWAY_TEAM": ("loser", "winner")}.get(
                winner, ("draw", "draw"))
            if winner is None:  # not played yet: the seed says draw, affluent says nothing
                home = away = None
            row = {
                "home": m["homeTeam"]["name"], "away": m["awayTeam"]["name"], "utc_date": m["utcDate"],
                "status": m["status"], "competition": m["competition"]["name"],
                "home_goals": m["score"]["fullTime"].get("home"), "away_goals": m["score"]["fullTime"].get("away"),
                "performance_home": home, "performance_away": away,
            }
            rows[(row["home"], row["away"], row["utc_date"])] = row
    return pd.DataFrame(list(rows.values()))


def seed_economy(pd):
    rows = {}
    for body in answers("economy.json"):
        for r in body[1]:
            rows[(r["countryiso3code"], r["indicator"]["id"], int(r["date"]))] = {
                "country": r["countryiso3code"], "country_name": r["country"]["value"],
                "indicator": r["indicator"]["id"], "year": int(r["date"]), "value": r["value"],
            }
    return pd.DataFrame(list(rows.values()))


def same(failures, what, ours, theirs, keys, columns, pd):
    """The same rows (by `keys`) with the same `columns` (numbers within 1e-9 relative)."""
    a = ours[keys + columns].sort_values(keys).reset_index(drop=True)
    b = theirs[keys + columns].sort_values(keys).reset_index(drop=True)
    if len(a) != len(b):
        failures.append(f"{what}: {len(a)} rows in affluent, {len(b)} in the reference")
        return
    for c in keys + columns:
        for i, (x, y) in enumerate(zip(a[c], b[c])):
            if pd.isna(x) and pd.isna(y):
                continue
            if isinstance(x, float) or isinstance(y, float):
                ok = not (pd.isna(x) or pd.isna(y)) and math.isclose(float(x), float(y), rel_tol=1e-9)
            else:
                ok = x == y
            if not ok:
                failures.append(f"{what}: row {dict(b.loc[i, keys])} column {c}: affluent {x!r}, reference {y!r}")
                return
    print(f"ok  {what}: {len(a)} rows equal")


def spearman(a, b):
    import pandas as pd
    return pd.Series(a).rank().corr(pd.Series(b).rank())


def main() -> int:
    if os.environ.get("AFFLUENT_CHECK_INNER") != "1":
        env = dict(os.environ, AFFLUENT_CHECK_INNER="1")
        return subprocess.run([python_with_packages(), os.path.abspath(__file__), *sys.argv[1:]],
                              env=env).returncode
    import numpy as np
    import pandas as pd
    import statsmodels.api as sm
    from sklearn.ensemble import IsolationForest

    affluent = binary()
    tmp = tempfile.mkdtemp(prefix="affluent-culture-check-")
    failures = []
    try:
        project = os.path.join(tmp, "culture")
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".affluent", "check", ".env"))
        env = {k: v for k, v in os.environ.items()
               if k not in ("TICKETMASTER_API_KEY", "FOOTBALL_DATA_TOKEN", "CULTURE_SMTP_URL")}
        run([affluent, "--project", project, "demo", "--no-run", "--until", UNTIL], env=env)
        t = {}
        for table in ["events", "match_results", "standings", "economy", "gdp_growth", "alert_firings",
                      "gdp_forecast", "gdp_anomalies", "city_anomalies", "city_activity", "countries_view"]:
            path = os.path.join(tmp, f"{table}.parquet")
            run([affluent, "--project", project, "export", table, "--format", "parquet", "--out", path])
            t[table] = pd.read_parquet(path)

        # 2. The seed's summaries.
        events = t["events"].copy()
        events["date"] = pd.to_datetime(events["date"]).dt.strftime("%Y-%m-%d")
        events["sale_start"] = pd.to_datetime(events["sale_start"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        same(failures, "events", events, seed_events(pd), ["name", "date"],
             ["type", "venue", "city", "country", "price_min", "price_max", "sale_start"], pd)
        matches = t["match_results"].copy()
        matches["utc_date"] = pd.to_datetime(matches["utc_date"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        reference_matches = seed_matches(pd)
        same(failures, "matches", matches, reference_matches, ["home", "away", "utc_date"],
             ["status", "competition", "home_goals", "away_goals", "performance_home", "performance_away"], pd)
        economy = seed_economy(pd)
        same(failures, "economy", t["economy"], economy, ["country", "indicator", "year"],
             ["country_name", "value"], pd)

        played = reference_matches[reference_matches["status"] == "FINISHED"]
        sides = pd.concat([
            pd.DataFrame({"competition": played["competition"], "team": played["home"],
                          "scored": played["home_goals"], "conceded": played["away_goals"]}),
            pd.DataFrame({"competition": played["competition"], "team": played["away"],
                          "scored": played["away_goals"], "conceded": played["home_goals"]}),
        ])
        sides["won"] = (sides["scored"] > sides["conceded"]).astype(int)
        sides["drawn"] = (sides["scored"] == sides["conceded"]).astype(int)
        sides["lost"] = (sides["scored"] < sides["conceded"]).astype(int)
        table = sides.groupby(["competition", "team"], as_index=False).agg(
            played=("won", "size"), won=("won", "sum"), drawn=("drawn", "sum"), lost=("lost", "sum"),
            goals_for=("scored", "sum"), goals_against=("conceded", "sum"))
        table["goal_difference"] = table["goals_for"] - table["goals_against"]
        table["points"] = 3 * table["won"] + table["drawn"]
        table["rank"] = (table.sort_values(["points", "goal_difference", "goals_for"], ascending=False)
                         .groupby("competition").cumcount() + 1)
        # Ties share the best rank, as SQL's rank().
        key = ["competition", "points", "goal_difference", "goals_for"]
        table["rank"] = table.groupby(key)["rank"].transform("min")
        same(failures, "standings", t["standings"], table, ["competition", "team"],
             ["rank", "played", "won", "drawn", "lost", "goals_for", "goals_against", "goal_difference", "points"], pd)

        gdp = economy[(economy["indicator"] == "NY.GDP.MKTP.CD") & economy["value"].notna()].sort_values(["country", "year"])
        gdp["growth_pct"] = (100 * (gdp["value"] / gdp.groupby("country")["value"].shift(1) - 1)).round(3)
        same(failures, "GDP growth", t["gdp_growth"], gdp, ["country", "year"], ["growth_pct"], pd)

        # 3. Unusual GDP growth, walked year by year.
        expected = []
        for country, g in gdp[gdp["growth_pct"].notna()].groupby("country"):
            values, active = [], False
            for _, row in g.sort_values("year").iterrows():
                previous = values[-8:]
                holds = False
                if len(previous) >= 3:
                    m = float(np.median(previous))
                    mad = float(np.median([abs(x - m) for x in previous]))
                    v = row["growth_pct"]
                    z = 0.6745 * (v - m) / mad if mad > 0 else (0.0 if v == m else math.copysign(math.inf, v - m))
                    holds = abs(z) > 3.5
                    if holds and not active:
                        expected.append((country, int(row["year"]),
                                         f"{row['country_name']} : croissance du PIB inhabituelle en {int(row['year'])} "
                                         f"({fr_num(v)} %, médiane des 8 années précédentes {fr_num(m)} %)"))
                active = holds
                values.append(row["growth_pct"])
        fired = t["alert_firings"]
        fired = fired[fired["alert"] == "gdp_growth"]
        ours = sorted((json.loads(e)["country"], pd.Timestamp(o).year, m)
                      for e, o, m in zip(fired["entity"], fired["observed_at"], fired["message"]))
        if ours != sorted(expected):
            failures.append(f"gdp_growth alerts: affluent {ours}, reference {sorted(expected)}")
        else:
            print(f"ok  gdp_growth alerts: {len(ours)} firings equal, messages included")

        # 4. statsmodels OLS forecasts.
        fc = t["gdp_forecast"].copy()
        fc["year"] = pd.to_datetime(fc["year_start"]).dt.year
        checked = 0
        for country, g in gdp.groupby("country"):
            ours_c = fc[fc["country"] == country].sort_values("year")
            if len(g) < 3:
                if len(ours_c):
                    failures.append(f"forecast of {country}: {len(g)} observations, yet forecast")
                continue
            first = g["year"].min()
            fit = sm.OLS(g["value"].to_numpy(), sm.add_constant((g["year"] - first).to_numpy(float))).fit()
            future = np.arange(g["year"].max() + 1, g["year"].max() + 6)
            frame = fit.get_prediction(sm.add_constant((future - first).astype(float))).summary_frame(alpha=0.05)
            if list(ours_c["year"]) != list(future):
                failures.append(f"forecast of {country}: years {list(ours_c['year'])}, expected {list(future)}")
                continue
            for col, ref in [("forecast", "mean"), ("lower", "obs_ci_lower"), ("upper", "obs_ci_upper")]:
                for x, y in zip(ours_c[col], frame[ref]):
                    if not math.isclose(x, y, rel_tol=1e-6, abs_tol=1.0):
                        failures.append(f"forecast of {country}: {col} {x} vs statsmodels {y}")
                        break
            checked += 1
        if checked:
            print(f"ok  GDP forecasts of {checked} countries equal statsmodels' OLS predictions and 95 % intervals")

        # 5. Isolation forests against scikit-learn's, by rank.
        growth = gdp[gdp["growth_pct"].notna()].copy()
        growth["acceleration"] = growth.groupby("country")["growth_pct"].diff()
        growth = growth.dropna(subset=["growth_pct", "acceleration"]).sort_values(["country", "year"])
        cities = t["city_activity"].sort_values("city")
        for name, rows, keys, features in [
            ("gdp_anomalies", growth, ["country", "year"], ["growth_pct", "acceleration"]),
            ("city_anomalies", cities, ["city"], ["events", "days", "venues", "busiest_share"]),
        ]:
            x = rows[features].to_numpy(float)
            forest = IsolationForest(n_estimators=1000, max_samples=min(256, len(x)), random_state=0).fit(x)
            ref = rows[keys].assign(reference=-forest.score_samples(x))
            ours_s = t[name][keys + ["score"]]
            merged = ref.merge(ours_s, on=keys)
            if len(merged) != len(ref):
                failures.append(f"{name}: {len(ours_s)} rows scored, {len(ref)} expected")
                continue
            rho = spearman(merged["score"], merged["reference"])
            top = merged.sort_values("score", ascending=False).iloc[0]
            ref_top = merged.sort_values("reference", ascending=False).head(3)
            top_ok = any(all(top[k] == r[k] for k in keys) for _, r in ref_top.iterrows())
            if rho < 0.8 or not top_ok:
                failures.append(f"{name}: Spearman {rho:.3f} against scikit-learn, top row {dict(top[keys])} "
                                f"{'in' if top_ok else 'not in'} scikit-learn's top 3")
            else:
                print(f"ok  {name}: {len(merged)} rows, Spearman {rho:.3f} against scikit-learn, top row {dict(top[keys])} in its top 3")

        view = t["countries_view"]
        if not (view["events"].sum() == len(t["events"][t["events"]["country"].notna()])):
            failures.append(f"countries_view: {view['events'].sum()} events, events has {len(t['events'])}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
