"""Reference results of affluent's ML models, from scikit-learn and statsmodels.

`generate` writes a data set with a fixed seed and what scikit-learn and statsmodels compute
on it, into crates/affluent-ml/tests/data/ (committed: the crate's tests compare affluent's
results with these files, so CI needs no Python):

- artists.csv: 2,000 artists shaped like seed 002's features (fans_followers, popularity,
  engagement, score_per_follower), with is_star = the top 10 % of a noisy score;
- sklearn_logistic.csv: StandardScaler then LogisticRegression(C=0.1,
  class_weight="balanced", lbfgs, tol=1e-10) on every row: each artist's probability, and the
  coefficients (scaled space) in sklearn_logistic_coef.json;
- sklearn_knn.csv: NearestNeighbors on the scaled features: each artist's 5 nearest others;
- series.csv: two daily series (weekly cycle, trend, noise) of 364 days;
- anomalies.csv: 1,000 ordinary points and 25 outliers (is_outlier) in 3 features;
  sklearn_isolation.csv: IsolationForest(n_estimators=100, max_samples=256) scores, as
  -score_samples (0 to 1, above 0.5 anomalous);
- statsmodels_ets.json: ExponentialSmoothing(trend="add", seasonal="add",
  seasonal_periods=7) fitted on all but the last 28 days, its MAE over those 28.

`bench PROJECT_DIR BIN` times scikit-learn and statsmodels on the same data (in this process,
data in memory) against `affluent ml train` (whole process: start, query, fit, predictions
written to Delta; and the training as affluent reports it), and prints the rows of
BENCHMARKS.md.

    python3 bench/ml_reference.py generate
    python3 bench/ml_reference.py bench /tmp/ml-bench target/release/affluent
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "crates", "affluent-ml", "tests", "data")
FEATURES = ["fans_followers", "popularity", "engagement", "score_per_follower"]


def artists(n=2000, seed=7):
    rng = np.random.default_rng(seed)
    followers = np.round(np.exp(rng.normal(9.5, 1.4, n))).astype(np.int64) + 100
    popularity = np.clip(np.round(rng.normal(40, 15, n) + 4 * np.log10(followers)), 0, 100)
    engagement = popularity / np.log10(followers)
    score = 0.5 * popularity + 6 * np.log10(followers) + rng.normal(0, 6, n)
    score_per_follower = score / np.log10(followers)
    star = score >= np.quantile(score, 0.9)
    return pd.DataFrame(
        {
            "artist_id": [f"a{i:04d}" for i in range(n)],
            "fans_followers": followers,
            "popularity": popularity,
            "engagement": np.round(engagement, 6),
            "score_per_follower": np.round(score_per_follower, 6),
            "score": np.round(score, 6),
            "is_star": star.astype(int),
        }
    )


def series(days=364, seed=11):
    rng = np.random.default_rng(seed)
    week = np.array([120, 135, 140, 138, 150, 90, 40], dtype=float)
    rows = []
    start = pd.Timestamp("2024-01-01")
    for name, level, slope in [("north", 1.0, 0.08), ("south", 0.6, -0.03)]:
        for t in range(days):
            value = level * week[t % 7] + slope * t + rng.normal(0, 6)
            rows.append({"agency": name, "day": (start + pd.Timedelta(days=t)).date().isoformat(), "visits": round(value, 3)})
    return pd.DataFrame(rows)


def sklearn_logistic(df):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(df[FEATURES].to_numpy(dtype=float))
    model = LogisticRegression(C=0.1, class_weight="balanced", solver="lbfgs", tol=1e-10, max_iter=10000)
    model.fit(x, df["is_star"].to_numpy())
    return model, x


def sklearn_knn(x, k=5):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
    dist, idx = nn.kneighbors(x)
    return dist, idx


def anomalies(seed=5):
    rng = np.random.default_rng(seed)
    normal = rng.normal(0, 1, (1000, 3)) * [1.0, 2.0, 0.5] + [10, -3, 0]
    outliers = rng.uniform(-8, 8, (25, 3)) * [1.0, 2.0, 0.5] + [10, -3, 0]
    # Keep only outliers far from the cloud (a uniform draw can land inside it).
    outliers = outliers[np.linalg.norm((outliers - [10, -3, 0]) / [1.0, 2.0, 0.5], axis=1) > 4][:25]
    x = np.vstack([normal, outliers])
    df = pd.DataFrame(np.round(x, 6), columns=["x1", "x2", "x3"])
    df.insert(0, "point", [f"p{i:04d}" for i in range(len(df))])
    df["is_outlier"] = [0] * len(normal) + [1] * len(outliers)
    return df


def ets_mae(values, season=7, holdout=28):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    train, test = values[:-holdout], values[-holdout:]
    fit = ExponentialSmoothing(train, trend="add", seasonal="add", seasonal_periods=season).fit()
    forecast = fit.forecast(holdout)
    return float(np.mean(np.abs(test - forecast)))


def generate():
    os.makedirs(DATA, exist_ok=True)
    df = artists()
    df.to_csv(os.path.join(DATA, "artists.csv"), index=False)
    model, x = sklearn_logistic(df)
    pd.DataFrame({"artist_id": df["artist_id"], "probability": model.predict_proba(x)[:, 1]}).to_csv(
        os.path.join(DATA, "sklearn_logistic.csv"), index=False, float_format="%.12g"
    )
    with open(os.path.join(DATA, "sklearn_logistic_coef.json"), "w") as f:
        json.dump({"coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])}, f, indent=1)
    dist, idx = sklearn_knn(x)
    rows = []
    for i in range(len(df)):
        others = [j for j in idx[i] if j != i][:5]
        for rank, j in enumerate(others, start=1):
            rows.append({"artist_id": df["artist_id"][i], "rank": rank, "neighbour": df["artist_id"][j]})
    pd.DataFrame(rows).to_csv(os.path.join(DATA, "sklearn_knn.csv"), index=False)
    a = anomalies()
    a.to_csv(os.path.join(DATA, "anomalies.csv"), index=False)
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(a[["x1", "x2", "x3"]])
    pd.DataFrame({"point": a["point"], "score": -forest.score_samples(a[["x1", "x2", "x3"]])}).to_csv(
        os.path.join(DATA, "sklearn_isolation.csv"), index=False, float_format="%.9g"
    )
    s = series()
    s.to_csv(os.path.join(DATA, "series.csv"), index=False)
    maes = {name: ets_mae(g["visits"].to_numpy()) for name, g in s.groupby("agency")}
    with open(os.path.join(DATA, "statsmodels_ets.json"), "w") as f:
        json.dump({"holdout": 28, "season": 7, "mae": maes, "mean_mae": float(np.mean(list(maes.values())))}, f, indent=1)
    print(f"wrote {DATA}")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def affluent_train(binary, project, model):
    """`affluent ml train MODEL` as a whole process: seconds, peak RSS (MiB), and the training's
    own duration as affluent reports it (query, fit, predictions written to Delta)."""
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "--project", project, "ml", "train", model], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = int(out.stderr.strip().splitlines()[-1]) / 1024
    line = next(l for l in out.stdout.splitlines() if l.startswith(model + " "))
    own = float(line.rsplit(" in ", 1)[1].split(" ms")[0]) / 1000
    return wall, rss, own, line


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(project, binary, n=200_000, knn_n=20_000, series_n=100):
    """The same models at a larger size: scikit-learn / statsmodels in this process (data
    already in memory), affluent as a whole process. Prints the rows of BENCHMARKS.md."""
    from sklearn.ensemble import IsolationForest
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    os.makedirs(project, exist_ok=True)
    df = artists(n=n, seed=3)
    df.to_csv(os.path.join(project, "artists.csv"), index=False)
    df.head(knn_n).to_csv(os.path.join(project, "artists_small.csv"), index=False)
    rng = np.random.default_rng(1)
    week = np.array([120, 135, 140, 138, 150, 90, 40], dtype=float)
    rows = []
    for k in range(series_n):
        for t in range(364):
            rows.append((f"s{k:03d}", (pd.Timestamp("2024-01-01") + pd.Timedelta(days=t)).date().isoformat(), week[t % 7] * (1 + k / 100) + 0.05 * t + rng.normal(0, 6)))
    series_df = pd.DataFrame(rows, columns=["agency", "day", "visits"])
    series_df.to_csv(os.path.join(project, "series.csv"), index=False)
    with open(os.path.join(project, "affluent.toml"), "w") as f:
        f.write(PROJECT)
    for source in ["artists", "artists_small", "series"]:
        subprocess.run([binary, "--project", project, "ingest", source], check=True, capture_output=True)

    x_raw = df[FEATURES].to_numpy(dtype=float)
    results = []

    def logistic():
        x = StandardScaler().fit_transform(x_raw)
        m = LogisticRegression(C=0.1, class_weight="balanced", solver="lbfgs", tol=1e-10, max_iter=10000).fit(x, df["is_star"])
        return m.predict_proba(x)

    _, sk = timed(logistic)
    results.append((f"logistic regression, {n:,} rows × 4 features (C=0.1, balanced, scaled; tol 1e-10)", sk, "stars"))

    small = StandardScaler().fit_transform(x_raw[:knn_n])
    _, sk = timed(lambda: NearestNeighbors(n_neighbors=6, algorithm="brute").fit(small).kneighbors(small))
    results.append((f"kNN, {knn_n:,} rows × 4 features, k = 5 (exact)", sk, "similar"))

    _, sk = timed(lambda: IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(x_raw).score_samples(x_raw))
    results.append((f"isolation forest, {n:,} rows × 4 features, 100 trees", sk, "odd"))

    def ets():
        out = []
        for _, g in series_df.groupby("agency"):
            fit = ExponentialSmoothing(g["visits"].to_numpy(), trend="add", seasonal="add", seasonal_periods=7).fit()
            out.append(fit.forecast(28))
        return out

    _, sk = timed(ets)
    results.append((f"Holt-Winters, {series_n} daily series × 364 days, 28 days ahead", sk, "forecast"))

    print(f"reference process peak RSS: {peak_mib():.0f} MiB")
    print("| model | scikit-learn / statsmodels | affluent (whole process) | affluent (training) | peak RSS | ratio (whole process) |")
    print("|---|---|---|---|---|---|")
    for what, sk, model in results:
        wall, rss, own, line = affluent_train(binary, project, model)
        print(f"| {what} | {sk:.2f} s | {wall:.2f} s | {own:.2f} s | {rss:.0f} MiB | {sk / wall:.2f} |")
        print("  " + line, file=sys.stderr)


PROJECT = """
name = "ml-bench"
# An ML query is a read query: its rows count against max_rows (default 100,000).
[query]
max_rows = 1000000
[sources.artists]
type = "csv"
path = "artists.csv"
[tables.artists]
source = "artists"
[sources.artists_small]
type = "csv"
path = "artists_small.csv"
[tables.artists_small]
source = "artists_small"
[sources.series]
type = "csv"
path = "series.csv"
[tables.series]
source = "series"
[tables.series.columns]
agency = { path = "agency", type = "string" }
day = { path = "day", type = "date" }
visits = { path = "visits", type = "float" }

[ml.similar]
kind = "knn"
sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower FROM artists_small"
entity = ["artist_id"]
features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
k = 5

[ml.odd]
kind = "isolation_forest"
sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower FROM artists"
entity = ["artist_id"]
features = ["fans_followers", "popularity", "engagement", "score_per_follower"]

[ml.forecast]
kind = "forecast"
sql = "SELECT agency, day, visits FROM series"
entity = ["agency"]
time = "day"
value = "visits"
season = 7
horizon = 28
holdout = 0

[ml.stars]
kind = "logistic_regression"
sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower, is_star FROM artists"
entity = ["artist_id"]
features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
label = "is_star"
c = 0.1
class_weight = "balanced"
test_fraction = 0
"""

if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "generate":
        generate()
    elif len(sys.argv) >= 4 and sys.argv[1] == "bench":
        bench(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
