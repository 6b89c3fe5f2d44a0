"""Compression-Inference's quality surface, fitted from the sweep's CSV alone.

PSNR and SSIM are min-max normalised over all runs, score = their mean, Q = ln(score + 1e-6),
and Q(s', r') = L / (1 + exp(K1 (s' - B1) + K2 (r' - B2))) + D is fitted with
``scipy.optimize.curve_fit`` on every run, s' and r' being the min-max normalised compression
step and level. Compression-Inference's fit_model.py is not available, so its bounds and start point are
ours, stated in BOUNDS/``start_point`` and recorded in the JSON.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PARAMS = ("L", "K1", "B1", "K2", "B2", "D")
EPSILON = 1e-6
FORMULA = "Q(s', r') = L / (1 + exp(K1 (s' - B1) + K2 (r' - B2))) + D"
# Q lies in [ln 1e-6, ln(1 + 1e-6)] = [-13.8, 0]; the bounds leave room on both sides. Slopes
# up to 100 per unit of a [0, 1] axis allow a transition as sharp as one grid cell; the
# midpoints may sit up to one axis length outside the measured range.
BOUNDS = {"L": (-30.0, 30.0), "K1": (-100.0, 100.0), "B1": (-1.0, 2.0),
          "K2": (-100.0, 100.0), "B2": (-1.0, 2.0), "D": (-30.0, 30.0)}


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
    """L spans Q's range downward from D = max Q; each slope's sign follows Q's correlation with
    its axis (with L < 0, Q rises with K·x), so both Compression-Inference's ratio axis (coarser as it
    grows) and a bit-depth axis (finer as it grows) start on the right side."""
    q = table.Q
    sign = {axis: np.sign(np.corrcoef(table[axis], q)[0, 1]) or 1.0 for axis in ("s_norm", "r_norm")}
    return {"L": float(q.min() - q.max()), "K1": 5.0 * sign["s_norm"], "B1": 0.5,
            "K2": 5.0 * sign["r_norm"], "B2": 0.5, "D": float(q.max())}


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
        at_bound = bool(np.isclose(value, lo, atol=1e-6 * (hi - lo)) or
                        np.isclose(value, hi, atol=1e-6 * (hi - lo)))
        params[name] = {"value": float(value), "stderr": float(error), "lower": lo, "upper": hi,
                        "on_bound": at_bound}
        if at_bound:
            on_bound.append(name)
    return {"params": params, "r2": r2, "start": start, "on_bound": on_bound}


def fit_surface(runs: pd.DataFrame, convention: str = "gray", psnr_cap_db: float = 100.0) -> dict:
    """Compression-Inference's whole procedure on the sweep's runs: normalise, score, Q, fit."""
    table = fit_table(runs, convention, psnr_cap_db)
    cells = table.groupby(["step", "level"]).ngroups
    if cells <= len(PARAMS):
        raise ValueError(f"the sweep has {cells} (step, level) cells; fitting {len(PARAMS)} "
                         "parameters needs more (use at least 2 steps x 4 levels or 3 x 3)")
    fitted = fit_q(table)
    params, on_bound = fitted["params"], fitted["on_bound"]
    return {
        "formula": FORMULA, "params": params, "r2": fitted["r2"], "n_runs": int(len(table)),
        "n_cells": int(cells), "start": fitted["start"], "fit_on": "every run (not cell means)",
        "convention": convention, "psnr_cap_db": psnr_cap_db,
        "n_psnr_capped": int(table.psnr_capped.sum()),
        "normalisation": {
            "step": [float(table.step.min()), float(table.step.max())],
            "level": [float(table.level.min()), float(table.level.max())],
            "level_name": str(table.level_name.iloc[0]) if "level_name" in table else "level",
            "psnr_db": [float(table.psnr_for_fit.min()), float(table.psnr_for_fit.max())],
            "ssim": [float(table[f"ssim_{convention}"].min()), float(table[f"ssim_{convention}"].max())],
        },
        "on_bound": on_bound,
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
    grid_s, grid_r = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 40))
    fig = plt.figure(figsize=(7, 5.5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(grid_s, grid_r, surface((grid_s, grid_r), *values), cmap="viridis", alpha=0.6)
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
    ax.set(xlabel=level_name, ylabel="compress_at_step", title="Measured mean score")
    fig.tight_layout()
    save_figure(fig, heatmap_png)
    plt.close(fig)
