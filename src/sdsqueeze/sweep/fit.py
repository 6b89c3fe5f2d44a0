"""Compression-Inference's quality surface, fitted from the sweep's CSV alone, and whether it is identified.

The Compression-Inference project's public fit_model.py is followed: PSNR and SSIM are min-max
normalised over all runs, score = their mean, Q = ln(score + 1e-6), s' and r' are the min-max
normalised compression step and level, and Q(s', r') = L / (1 + exp(K1 (s' - B1) + K2 (r' - B2))) + D
is fitted with ``scipy.optimize.curve_fit`` on every run, with that file's bounds and start point.

Two things Compression-Inference's script does not do: intervals come from a bootstrap over seeds (the runs of
one seed share its trajectory, so they are not independent draws), and the fit is called
*identified* only when no parameter sits on a bound and R² reaches ``min_r2``; a surface that is
not identified is not drawn, and the reasons are recorded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PARAMS = ("L", "K1", "B1", "K2", "B2", "D")
EPSILON = 1e-6
FORMULA = "Q(s', r') = L / (1 + exp(K1 (s' - B1) + K2 (r' - B2))) + D"
# Compression-Inference's fit_model.py: lower [0.1, -50, 0, -50, 0, -5], upper [2, 50, 1, 50, 1, 5].
BOUNDS = {"L": (0.1, 2.0), "K1": (-50.0, 50.0), "B1": (0.0, 1.0),
          "K2": (-50.0, 50.0), "B2": (0.0, 1.0), "D": (-5.0, 5.0)}
# Compression-Inference's p0 = [1, -10, 0.5, 10, 0.5, 0]; see start_point for the slopes' signs.
SEED_START = {"L": 1.0, "K1": -10.0, "B1": 0.5, "K2": 10.0, "B2": 0.5, "D": 0.0}
BOOTSTRAP_SEED = 0  # fixed: a rerun draws the same resamples, bit for bit


def surface(x, L, K1, B1, K2, B2, D):
    s, r = x
    return L / (1.0 + np.exp(K1 * (s - B1) + K2 * (r - B2))) + D


def minmax(values: pd.Series) -> pd.Series:
    low, high = values.min(), values.max()
    if high == low:
        raise ValueError(f"cannot min-max normalise '{values.name}': every run has {low}")
    return (values - low) / (high - low)


def fit_table(runs: pd.DataFrame, convention: str, psnr_cap_db: float) -> pd.DataFrame:
    """Add s', r', normalised scores and Q. Identical images (PSNR = inf) are capped first."""
    table = runs.copy()
    psnr = table[f"psnr_{convention}_db"].astype(float)
    table["psnr_capped"] = psnr > psnr_cap_db
    table["psnr_for_fit"] = psnr.clip(upper=psnr_cap_db)
    table["s_norm"] = minmax(table.step.astype(float).rename("step"))
    table["r_norm"] = minmax(table.level.astype(float).rename("level"))
    table["score"] = (minmax(table.psnr_for_fit) + minmax(table[f"ssim_{convention}"].astype(float))) / 2
    table["Q"] = np.log(table.score + EPSILON)
    return table


def start_point(table: pd.DataFrame) -> dict[str, float]:
    """Compression-Inference's start point. Its slopes' signs suit its axes (Q rises with the step, falls with
    the ratio; with L > 0, Q rises as K·x falls); each sign here follows Q's correlation with the
    axis instead, which gives exactly Compression-Inference's p0 on its axes and the right side for a
    bit-depth axis (finer as it grows)."""
    start = dict(SEED_START)
    for slope, axis in (("K1", "s_norm"), ("K2", "r_norm")):
        corr = np.corrcoef(table[axis], table.Q)[0, 1]
        sign = -np.sign(corr) if np.isfinite(corr) and corr != 0 else np.sign(SEED_START[slope])
        start[slope] = abs(SEED_START[slope]) * float(sign)
    return start


def fit_q(table: pd.DataFrame) -> dict:
    """Fit the surface to columns s_norm, r_norm, Q: values, standard errors, R², bound flags."""
    from scipy.optimize import curve_fit

    start = {p: float(np.clip(v, *BOUNDS[p])) for p, v in start_point(table).items()}
    lower = [BOUNDS[p][0] for p in PARAMS]
    upper = [BOUNDS[p][1] for p in PARAMS]
    x = (table.s_norm.to_numpy(), table.r_norm.to_numpy())
    q = table.Q.to_numpy()
    try:
        values, covariance = curve_fit(surface, x, q, p0=[start[p] for p in PARAMS],
                                       bounds=(lower, upper), maxfev=20000)
    except RuntimeError as err:
        raise ValueError(f"the quality surface did not converge: {err}") from None
    residuals = q - surface(x, *values)
    total = float(((q - q.mean()) ** 2).sum())
    r2 = 1.0 - float((residuals**2).sum()) / total if total > 0 else float("nan")
    stderr = np.sqrt(np.clip(np.diag(covariance), 0, None))
    params, on_bound = {}, []
    for name, value, error, lo, hi in zip(PARAMS, values, stderr, lower, upper):
        # within 0.1 % of the range: curve_fit's trust region stops just inside a bound
        at_bound = bool(min(value - lo, hi - value) <= 1e-3 * (hi - lo))
        params[name] = {"value": float(value), "stderr": float(error), "lower": lo, "upper": hi,
                        "on_bound": at_bound}
        if at_bound:
            on_bound.append(name)
    return {"params": params, "r2": r2, "start": start, "on_bound": on_bound}


def identification(r2: float, on_bound: list[str], min_r2: float) -> list[str]:
    """Why the surface is not identified (empty: it is): a parameter on a bound is not determined
    by the data, and a low R² means the formula does not describe them."""
    reasons = [f"parameter {p} sits on its bound; the data do not determine it" for p in on_bound]
    if not np.isfinite(r2) or r2 < min_r2:
        reasons.append(f"R² = {r2:.3f} is below the stated threshold {min_r2:g}")
    return reasons


def runs_of_seeds(runs: pd.DataFrame, seeds) -> pd.DataFrame:
    """The runs of the drawn seeds, a seed drawn twice contributing its runs twice."""
    return pd.concat([runs[runs.seed == s] for s in seeds], ignore_index=True)


def bootstrap_over_seeds(runs: pd.DataFrame, convention: str, psnr_cap_db: float,
                         resamples: int) -> dict:
    """Percentile intervals (2.5–97.5 %) of every parameter and of R², redoing Compression-Inference's whole
    procedure (normalise, score, Q, fit) on seeds drawn with replacement: the seed, not the run,
    is the independent unit."""
    seeds = np.sort(runs.seed.unique())
    if len(seeds) < 2 or resamples < 1:
        return {"unit": "seed", "n_seeds": len(seeds), "resamples": 0, "failed": 0,
                "intervals": {}, "note": "needs at least 2 seeds"}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws, failed = [], 0
    for _ in range(resamples):
        sample = runs_of_seeds(runs, rng.choice(seeds, size=len(seeds), replace=True))
        try:
            fitted = fit_q(fit_table(sample, convention, psnr_cap_db))
        except ValueError:  # a constant column after resampling, or no convergence
            failed += 1
            continue
        draws.append({**{p: fitted["params"][p]["value"] for p in PARAMS}, "r2": fitted["r2"]})
    table = pd.DataFrame(draws)
    intervals = ({name: [float(table[name].quantile(0.025)), float(table[name].quantile(0.975))]
                  for name in (*PARAMS, "r2")} if len(table) else {})
    note = (f"only {len(seeds)} seeds: {len(seeds) ** len(seeds)} possible resamples, the interval "
            "is coarse" if len(seeds) < 5 else "")
    return {"unit": "seed", "n_seeds": len(seeds), "resamples": int(resamples),
            "failed": failed, "intervals": intervals, "note": note}


def fit_surface(runs: pd.DataFrame, convention: str = "gray", psnr_cap_db: float = 100.0,
                min_r2: float = 0.8, resamples: int = 200) -> dict:
    """Compression-Inference's whole procedure on the sweep's runs (normalise, score, Q, fit), a bootstrap
    over seeds, and whether the surface is identified."""
    table = fit_table(runs, convention, psnr_cap_db)
    cells = table.groupby(["step", "level"]).ngroups
    if cells <= len(PARAMS):
        raise ValueError(f"the sweep has {cells} (step, level) cells; fitting {len(PARAMS)} "
                         "parameters needs more (use at least 2 steps x 4 levels or 3 x 3)")
    fitted = fit_q(table)
    params, on_bound = fitted["params"], fitted["on_bound"]
    reasons = identification(fitted["r2"], on_bound, min_r2)
    return {
        "formula": FORMULA, "params": params, "r2": fitted["r2"], "n_runs": len(table),
        "n_cells": int(cells), "start": fitted["start"], "fit_on": "every run (not cell means)",
        "bounds_source": "Compression-Inference's fit_model.py",
        "convention": convention, "psnr_cap_db": psnr_cap_db,
        "n_psnr_capped": int(table.psnr_capped.sum()),
        "n_score_zero": int((table.score == 0).sum()),
        "normalisation": {
            "step": [float(table.step.min()), float(table.step.max())],
            "level": [float(table.level.min()), float(table.level.max())],
            "level_name": str(table.level_name.iloc[0]) if "level_name" in table else "level",
            "psnr_db": [float(table.psnr_for_fit.min()), float(table.psnr_for_fit.max())],
            "ssim": [float(table[f"ssim_{convention}"].min()), float(table[f"ssim_{convention}"].max())],
        },
        "on_bound": on_bound,
        "min_r2": min_r2,
        "identified": not reasons,
        "not_identified_because": reasons,
        "bootstrap": bootstrap_over_seeds(runs, convention, psnr_cap_db, resamples),
        "warnings": [f"parameter {p} sits on its bound {params[p]['value']:g}; the surface is "
                     "not identified in that direction" for p in on_bound],
    }


def cell_means(table: pd.DataFrame) -> pd.DataFrame:
    return (table.groupby(["step", "level"], as_index=False)
            .agg(s_norm=("s_norm", "first"), r_norm=("r_norm", "first"), score=("score", "mean"),
                 Q=("Q", "mean"), runs=("Q", "size")))


def save_figure(fig, path) -> None:
    from .. import io

    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def plot_fit(runs: pd.DataFrame, result: dict, residual_png, surface_png, heatmap_png) -> None:
    """Residual plot, 3-D fitted surface over the measured cell means, heatmap of mean scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = fit_table(runs, result["convention"], result["psnr_cap_db"])
    values = [result["params"][p]["value"] for p in PARAMS]
    fitted = surface((table.s_norm.to_numpy(), table.r_norm.to_numpy()), *values)
    level_name = result["normalisation"]["level_name"]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter(fitted, table.Q - fitted, s=8, alpha=0.5)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(xlabel="fitted Q", ylabel="residual (measured − fitted)",
                title=f"Residuals, R² = {result['r2']:.3f}")
    axes[1].hist(table.Q - fitted, bins=30)
    axes[1].set(xlabel="residual", ylabel="runs")
    fig.tight_layout()
    save_figure(fig, residual_png)
    plt.close(fig)

    means = cell_means(table)
    fig = plt.figure(figsize=(7, 5.5))
    ax = fig.add_subplot(projection="3d")
    if result.get("identified", True):
        grid_s, grid_r = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 40))
        ax.plot_surface(grid_s, grid_r, surface((grid_s, grid_r), *values), cmap="viridis", alpha=0.6)
    else:  # an unidentified surface is not a result: only the measurements are drawn
        ax.set_title("fitted surface not drawn: not identified", fontsize=10)
    ax.scatter(means.s_norm, means.r_norm, means.Q, color="crimson", s=12, label="measured mean Q")
    ax.set(xlabel="step s' (normalised)", ylabel=f"{level_name} r' (normalised)", zlabel="Q")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, surface_png)
    plt.close(fig)

    pivot = means.pivot(index="step", columns="level", values="score")
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * pivot.shape[1], 1.0 + 0.45 * pivot.shape[0]))
    sns.heatmap(pivot, annot=True, fmt=".2f", cmap="viridis", ax=ax,
                cbar_kws={"label": "mean normalised score"})
    direction = {"ratio": "ratio (larger = coarser rounding)", "bits": "bits (larger = finer)"}
    ax.set(xlabel=direction.get(level_name, level_name), ylabel="compress after step k",
           title="Measured mean score (higher = closer to the uncompressed image)")
    fig.tight_layout()
    save_figure(fig, heatmap_png)
    plt.close(fig)
