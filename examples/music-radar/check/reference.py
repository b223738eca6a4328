#!/usr/bin/env python3
"""Checks examples/music-radar against independent computations (pandas, scikit-learn).

1. Runs the example offline for 60 days ending at a fixed date (`affluent demo --no-run
   --until`), on a copy of the project.
2. Exports `history`, `radar`, `alert_firings`, `future_star`, `similar_artists` and
   `ml_models` (`affluent export`).
3. Ground truth: every artist's numbers at 08:00 of each day, as the simulator served them
   (`affluent simulate music --export-truth`), must be the history's, once per artist and day.
4. pandas recomputes the history's audience, popularity, score and category from the truth
   (the definitions in affluent.toml's comments, written again here), and the seed's alerts:
   for each artist, day after day, growth > 5 %, drop < -5 %, score +10 %, trending (growth
   > 15 % and score > 60), 100k followers reached; an alert fires on the first day its
   condition holds and not again before a day where it does not. Every firing, its day and its
   French message must be affluent's, and affluent must have no other.
5. scikit-learn: the future-star rows (emerging artists in artist order, label = percent rank
   of the score >= 0.9), the held-out 20 % drawn as affluent draws it (SplitMix64 Fisher-Yates,
   seed 42), StandardScaler + LogisticRegression(C=0.1, class_weight="balanced") on the rest:
   every probability within 1e-4 of affluent's, and the held-out ROC AUC within 1e-9;
   NearestNeighbors on the scaled features: each artist's 5 neighbours (by distance, within
   1e-6).

Usage: examples/music-radar/check/reference.py [AFFLUENT_BINARY]
(default: the debug binary of CARGO_TARGET_DIR or target/). pandas, scikit-learn and pyarrow
are installed with pip in a virtualenv under ~/.cache/affluent on first use. Exit status 0
when everything matches.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import venv

PACKAGES = ["pandas==2.2.3", "scikit-learn==1.5.2", "pyarrow==18.1.0"]
UNTIL = "2026-11-30"
FIRST_DAY = "2026-10-01"
HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(EXAMPLE))


def python_with_packages() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    env = os.path.join(cache, "affluent", "music-check")
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


# ---------------------------------------------------------------------------------------------
# The project's definitions, written again.

def score_of(popularity, fans_followers):
    return round(0.6 * popularity + 0.4 * min(100.0, 100.0 * math.log10(1 + fans_followers) / 6), 1)


def category_of(ff):
    if ff < 10000:
        return "Émergent"
    if ff < 60000:
        return "En développement"
    if ff < 200000:
        return "Confirmé"
    return "Star"


def fr_int(x):
    """50 000 (fr-FR grouping with a space), as affluent's `{name:int}`."""
    n = int(round(x))
    text = f"{abs(n):,}".replace(",", " ")
    return ("-" if n < 0 else "") + text


def fr_pct(ratio):
    """12,3 % (one decimal), as affluent's `{name:pct}`."""
    text = f"{abs(ratio * 100):.1f}"
    sign = "-" if ratio < 0 and text.strip("0.") != "" else ""
    return sign + text.replace(".", ",") + " %"


def fr_num(x):
    """Two decimals, trailing zeros dropped, as affluent's `{name:num}`."""
    text = f"{abs(x):,.2f}".replace(",", " ").replace(".", ",")
    text = text.rstrip("0").rstrip(",")
    sign = "-" if x < 0 and text != "0" else ""
    return sign + text


def shuffled(n, seed):
    """affluent_ml::fit::shuffled: Fisher-Yates over SplitMix64."""
    mask = (1 << 64) - 1
    state = seed & mask

    def next_u64():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    out = list(range(n))
    for i in range(n - 1, 0, -1):
        j = next_u64() % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def main() -> int:
    if os.environ.get("AFFLUENT_CHECK_INNER") != "1":
        env = dict(os.environ, AFFLUENT_CHECK_INNER="1")
        return subprocess.run([python_with_packages(), os.path.abspath(__file__), *sys.argv[1:]],
                              env=env).returncode
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    affluent = binary()
    tmp = tempfile.mkdtemp(prefix="affluent-music-check-")
    failures = []
    try:
        project = os.path.join(tmp, "music-radar")
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".affluent", "check", ".env"))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SPOTIFY_") and not k.startswith("DEEZER_") and k != "EMERGING_MAX"}
        run([affluent, "--project", project, "demo", "--no-run", "--days", "60", "--until", UNTIL],
            env=env)
        frames = {}
        for table in ["history", "radar", "alert_firings", "future_star", "similar_artists", "ml_models"]:
            path = os.path.join(tmp, f"{table}.parquet")
            run([affluent, "--project", project, "export", table, "--format", "parquet", "--out", path])
            frames[table] = pd.read_parquet(path)
        truth_path = os.path.join(tmp, "truth.csv")
        run([affluent, "simulate", "music", "--export-truth", truth_path, "--from", FIRST_DAY,
             "--to", UNTIL])
        truth = pd.read_csv(truth_path, dtype={"spotify_id": str, "deezer_id": str})
        history = frames["history"].copy()
        history["day"] = pd.to_datetime(history["day"]).dt.strftime("%Y-%m-%d")

        # 3. Ground truth.
        truth["artist_id"] = truth["spotify_id"].where(truth["spotify_id"].notna(),
                                                       "deezer:" + truth["deezer_id"].fillna(""))
        keys = history[["artist_id", "day"]]
        if keys.duplicated().any():
            failures.append(f"history has {int(keys.duplicated().sum())} repeated (artist, day) rows")
        merged = truth.merge(history, on=["artist_id", "day"], how="outer", suffixes=("_truth", ""),
                             indicator=True)
        missing = merged[merged["_merge"] == "left_only"]
        extra = merged[merged["_merge"] == "right_only"]
        if len(missing) or len(extra):
            failures.append(f"history vs truth: {len(missing)} artist-days missing, {len(extra)} extra "
                            f"(e.g. {missing[['artist_id', 'day']].head(3).values.tolist()}"
                            f" / {extra[['artist_id', 'day']].head(3).values.tolist()})")
        both = merged[merged["_merge"] == "both"].copy()
        for column in ["followers", "fans"]:
            a = both[f"{column}_truth"].astype("Float64")
            b = both[column].astype("Float64")
            differ = ~((a.isna() & b.isna()) | (a == b).fillna(False))
            if differ.any():
                failures.append(f"history.{column} differs from the truth on {int(differ.sum())} rows")
        print(f"ground truth: {len(truth)} artist-days served over {truth['day'].nunique()} days, "
              f"{len(history)} history rows")

        # 4a. The scores.
        t = truth.copy()
        t["fans_followers"] = t["followers"].fillna(0) + t["fans"].fillna(0)
        est = np.clip(np.round(14 * np.log10(np.maximum(t["fans"].fillna(1), 1)) - 25), 0, 100)
        t["popularity_ref"] = t["popularity"].where(t["popularity"].notna(), est)
        t["score_ref"] = [score_of(p, f) for p, f in zip(t["popularity_ref"], t["fans_followers"])]
        t["category_ref"] = [category_of(f) for f in t["fans_followers"]]
        check = t.merge(history, on=["artist_id", "day"], suffixes=("_t", ""))
        for ours, ref in [("fans_followers", "fans_followers_t"), ("popularity", "popularity_ref"),
                          ("score", "score_ref")]:
            bad = (check[ours].astype(float) - check[ref].astype(float)).abs() > 1e-9
            if bad.any():
                failures.append(f"history.{ours} differs from pandas on {int(bad.sum())} rows, e.g. "
                                f"{check.loc[bad, ['artist_id', 'day', ours, ref]].head(3).values.tolist()}")
        bad = check["category"] != check["category_ref"]
        if bad.any():
            failures.append(f"history.category differs from pandas on {int(bad.sum())} rows")

        # 4b. The alerts, day after day.
        names = t.set_index("artist_id")["name"].to_dict()
        expected = []
        rules = {
            "growth": lambda f0, f1, s0, s1: f0 not in (None, 0) and f1 is not None and (f1 - f0) / abs(f0) > 0.05,
            "drop": lambda f0, f1, s0, s1: f0 not in (None, 0) and f1 is not None and (f1 - f0) / abs(f0) < -0.05,
            "score_up": lambda f0, f1, s0, s1: s0 not in (None, 0) and (s1 - s0) / abs(s0) > 0.10,
            "trending": lambda f0, f1, s0, s1: f0 not in (None, 0) and f1 is not None and (f1 - f0) / abs(f0) > 0.15 and s1 > 60,
            "milestone": lambda f0, f1, s0, s1: f0 is not None and f1 is not None and f0 < 100000 <= f1,
        }

        def message(alert, artist, f0, f1, s0, s1):
            if alert in ("growth", "drop"):
                word = "croissance" if alert == "growth" else "baisse"
                return f"{artist} : {word} de {fr_pct((f1 - f0) / abs(f0))} des followers ({fr_int(f0)} → {fr_int(f1)})"
            if alert == "score_up":
                return f"{artist} : score de potentiel en hausse de {fr_pct((s1 - s0) / abs(s0))} ({fr_num(s0)} → {fr_num(s1)})"
            if alert == "trending":
                return f"{artist} : artiste en pleine ascension ! Croissance {fr_pct((f1 - f0) / abs(f0))} avec score {fr_num(s1)}"
            return f"{artist} : 100k followers atteints ! ({fr_int(f1)})"

        for artist_id, rows in t.sort_values("day").groupby("artist_id"):
            rows = rows.reset_index(drop=True)
            for alert, holds in rules.items():
                active = False
                for i in range(len(rows)):
                    f1 = None if pd.isna(rows.loc[i, "followers"]) else float(rows.loc[i, "followers"])
                    s1 = float(rows.loc[i, "score_ref"])
                    if alert != "score_up" and f1 is None:
                        continue  # not a row of this alert's query
                    if i == 0:
                        now = False
                    else:
                        f0 = None if pd.isna(rows.loc[i - 1, "followers"]) else float(rows.loc[i - 1, "followers"])
                        s0 = float(rows.loc[i - 1, "score_ref"])
                        now = holds(f0, f1, s0, s1)
                    if now and not active:
                        expected.append((alert, artist_id, rows.loc[i, "day"],
                                         message(alert, names[artist_id], f0, f1, s0, s1)))
                    active = now
        firings = frames["alert_firings"]
        got = []
        for _, f in firings.iterrows():
            entity = json.loads(f["entity"])
            got.append((f["alert"], entity["artist_id"], str(f["observed_at"])[:10], f["message"]))
        expected_set, got_set = set(expected), set(got)
        if len(got) != len(got_set):
            failures.append(f"alert_firings repeats {len(got) - len(got_set)} firings")
        only_expected = sorted(expected_set - got_set)
        only_got = sorted(got_set - expected_set)
        if only_expected or only_got:
            failures.append(f"alerts: {len(only_expected)} expected by pandas but not fired, "
                            f"{len(only_got)} fired but not expected; e.g. {only_expected[:2]} / {only_got[:2]}")
        per_alert = pd.Series([e[0] for e in expected]).value_counts().to_dict()
        print(f"alerts: {len(expected)} expected by pandas {per_alert}, {len(got)} fired by affluent")

        # 5a. Future star against scikit-learn.
        radar = frames["radar"].sort_values("artist_id").reset_index(drop=True)
        rows = radar[radar["emerging"]].sort_values("artist_id").reset_index(drop=True)
        features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
        rank = rows["score"].rank(method="min")
        rows["is_star"] = (rank - 1) / (len(rows) - 1) >= 0.9
        ours = frames["future_star"].set_index("artist_id")
        label_diff = (rows.set_index("artist_id")["is_star"] != ours.loc[rows["artist_id"], "is_star"]).sum()
        if label_diff:
            failures.append(f"future_star: {label_diff} labels differ from pandas' top 10 %")
        x = rows[features].to_numpy(dtype=float)
        y = rows["is_star"].to_numpy()
        order = shuffled(len(rows), 42)
        n_test = int(round(len(rows) * 0.2))
        test, train = order[:n_test], order[n_test:]
        scaler = StandardScaler().fit(x[train])
        model = LogisticRegression(C=0.1, class_weight="balanced", solver="lbfgs", tol=1e-10,
                                   max_iter=10000).fit(scaler.transform(x[train]), y[train])
        p = model.predict_proba(scaler.transform(x))[:, 1]
        diff = np.abs(p - ours.loc[rows["artist_id"], "probability"].to_numpy())
        if diff.max() > 1e-4:
            failures.append(f"future_star probabilities differ from scikit-learn by up to {diff.max():.2e}")
        auc = roc_auc_score(y[test], p[test])
        ml = frames["ml_models"]
        ours_auc = float(ml[ml["model"] == "future_star"].sort_values("version")["roc_auc"].iloc[-1])
        if abs(auc - ours_auc) > 1e-9:
            failures.append(f"future_star ROC AUC {ours_auc} vs scikit-learn's {auc}")
        print(f"future star: {len(rows)} emerging artists, {int(y.sum())} stars, held out {n_test}; "
              f"max |p - sklearn| = {diff.max():.2e}; ROC AUC {ours_auc:.4f} (sklearn {auc:.4f}); "
              f"{int((p > 0.5).sum())} predicted stars, {int((p > 0.3).sum())} high potential")

        # 5b. Similar artists against scikit-learn.
        feats = np.column_stack([np.log10(1 + radar["fans_followers"].to_numpy(dtype=float)),
                                 radar["popularity"].to_numpy(dtype=float),
                                 radar["score"].to_numpy(dtype=float)])
        scaled = StandardScaler().fit_transform(feats)
        dist, idx = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(scaled).kneighbors(scaled)
        similar = frames["similar_artists"]
        mismatched = 0
        for i, artist_id in enumerate(radar["artist_id"]):
            ref = [(radar["artist_id"][j], d) for j, d in zip(idx[i], dist[i]) if j != i][:5]
            mine = similar[similar["artist_id"] == artist_id].sort_values("rank")
            ref_d = [d for _, d in ref]
            my_d = mine["distance"].tolist()
            if len(my_d) != 5 or max(abs(a - b) for a, b in zip(ref_d, my_d)) > 1e-6:
                mismatched += 1
            elif set(n for n, _ in ref) != set(mine["neighbour_artist_id"]) and len(set(np.round(ref_d, 9))) == 5:
                mismatched += 1
        if mismatched:
            failures.append(f"similar_artists: {mismatched} artists' neighbours differ from scikit-learn's")
        print(f"similar artists: {len(radar)} artists x 5 neighbours, {mismatched} differing from scikit-learn")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("MISMATCH:", f)
    print("music-radar check:", "FAILED" if failures else "every value matches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
