"""The seeds' claims (data/claims.yaml) against this run and the committed GPU results.

``claims_table`` is the analysis: per claim our measurement, where it comes from and a verdict
with its reason, all derived from result files by the rules below; ``claims_section`` only renders
that table. Verdicts:

- *confirmed* / *contradicted*: a number is met within the seed's own tolerance or not; a claimed
  direction is shown by a bootstrap interval that excludes no effect, or the interval lies on the
  other side; a trend holds everywhere or nowhere; a bound holds or is exceeded.
- *inconclusive*: the interval covers no effect, or a trend holds in some groups only.
- *not comparable*: the seed gives the result only in a figure, so there is no number to meet.
- *not measured in this run*: the result files that would measure it are absent; the claim names
  the config that produces them.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .page import ReportContext, Section, source_note, table_html

ROOT = Path(__file__).resolve().parents[3]
CLAIMS_PATH = ROOT / "data" / "claims.yaml"
SCHEMA_PATH = ROOT / "schemas" / "claims.schema.yaml"
CONFIRMED, CONTRADICTED, INCONCLUSIVE = "confirmed", "contradicted", "inconclusive"
NOT_COMPARABLE, NOT_MEASURED = "not comparable", "not measured in this run"
DEFAULTS = {"tolerance": 0.1, "source_form": "text"}


def load_claims(path: str | Path = CLAIMS_PATH) -> list[dict]:
    """The claims file, schema-checked (one message naming the claim and the key to fix)."""
    import jsonschema

    data = yaml.safe_load(Path(path).read_text())
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"invalid claims file {path}: at '{where}': {error.message}")
    ids = [c["id"] for c in data["claims"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"invalid claims file {path}: claim ids repeat: "
                         f"{sorted({i for i in ids if ids.count(i) > 1})}")
    return [{**DEFAULTS, **claim} for claim in data["claims"]]


@dataclass
class Evidence:
    """What the claims are checked against; None (or empty) where this run did not produce it."""

    gpu_results: list[str] = field(default_factory=list)
    per_image: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    sweep_runs: pd.DataFrame | None = None
    sweep_fit: dict | None = None
    rd: pd.DataFrame | None = None


@dataclass
class Measurement:
    text: str        # our measurement, in words
    where: str       # the run or files it comes from
    verdict: str = ""
    reason: str = ""


# ---- verdict rules: pure functions of measured numbers ----

def threshold_verdict(measured: float, claimed: float, tolerance: float) -> tuple[str, str]:
    """A 'higher is better' number (speedup, memory reduction) against the claim's figure."""
    floor = claimed * (1 - tolerance)
    if measured >= floor:
        return CONFIRMED, f"{measured:.3g} ≥ {floor:.3g} (the claim less its {tolerance:.0%} tolerance)"
    return CONTRADICTED, f"{measured:.3g} < {floor:.3g} (the claim less its {tolerance:.0%} tolerance)"


def effect_verdict(low: float, high: float) -> tuple[str, str]:
    """A claimed improvement, from the interval of (new − old) oriented so that > 0 is better."""
    interval = f"95% interval of the improvement [{low:.3g}, {high:.3g}]"
    if low > 0:
        return CONFIRMED, f"{interval} excludes no effect"
    if high <= 0:
        return CONTRADICTED, f"{interval}: no improvement"
    return INCONCLUSIVE, f"{interval} covers no effect"


def trend_verdict(rising: int, falling: int, groups: int, expect: str) -> tuple[str, str]:
    """A claimed monotone trend, from how many groups rise or fall strictly along the axis."""
    held, opposite = (rising, falling) if expect == "rises" else (falling, rising)
    counts = f"{rising} of {groups} groups rise, {falling} fall"
    if held == groups:
        return CONFIRMED, counts
    if opposite == groups:
        return CONTRADICTED, counts
    return INCONCLUSIVE, counts


def bound_verdict(excess: float, unit: str) -> tuple[str, str]:
    """A claimed upper bound, from how far the best measured point lies above it."""
    if excess <= 0:
        return CONFIRMED, f"every point stays below the bound (margin {-excess:.3g} {unit})"
    return CONTRADICTED, f"a point lies {excess:.3g} {unit} above the bound"


def fit_verdict(fit: dict) -> tuple[str, str]:
    """The seed's surface: identified → confirmed; low R² → contradicted; only a parameter on a
    bound → inconclusive (the formula may hold, the data do not pin it down)."""
    r2, min_r2 = fit["r2"], fit.get("min_r2", 0.8)
    if fit.get("identified"):
        return CONFIRMED, f"identified: R² = {r2:.3f} ≥ {min_r2:g}, no parameter on a bound"
    reasons = "; ".join(fit.get("not_identified_because", []))
    if not np.isfinite(r2) or r2 < min_r2:
        return CONTRADICTED, f"not identified: {reasons}"
    return INCONCLUSIVE, f"not identified: {reasons}"


# ---- measurements: from result files ----

def gpu_ratio(claim: dict, evidence: Evidence) -> Measurement | None:
    """Speedup (baseline s/image ÷ variant's) or memory reduction (1 − peak ratio), each inside
    one committed run (same machine, same process), newest run first, at the claim's batch.
    Of several listed variants the most favourable to the claim is taken, so a contradiction
    holds for all of them; of several listed baselines the fastest the run timed, the one a
    practitioner without the technique would use."""
    from ..accel import measure

    m = claim["measure"]
    speed = m["kind"] == "gpu_speedup"
    baselines = m["baseline"] if isinstance(m["baseline"], list) else [m["baseline"]]
    for path in reversed(measure.in_run_order(evidence.gpu_results)):
        rows, _ = measure.load([path])
        ok = rows[rows.ok & (rows.batch == m["batch"])].set_index("variant")
        candidates = [v for v in m["variants"] if v in ok.index]
        present = [b for b in baselines if b in ok.index]
        if not present or not candidates:
            continue
        baseline = min(present, key=lambda b: ok.loc[b, "s_per_image"])
        base = ok.loc[baseline]
        values = {v: (base.s_per_image / ok.loc[v, "s_per_image"] if speed
                      else 1 - ok.loc[v, "peak_memory_mb"] / base.peak_memory_mb) for v in candidates}
        best = max(values, key=values.get)
        shown = ", ".join(f"{v} {values[v]:.2f}x" if speed else f"{v} {values[v]:.0%}" for v in candidates)
        meta = measure.meta_for(path)
        run = measure.run_of(path)
        where = (f"{run} on {measure.machine_of(path)}: {meta.get('steps')} steps, "
                 f"{meta.get('size')} px, batch {m['batch']}")
        measurement = Measurement(f"{shown} (vs {baseline})", where)
        measurement.verdict, measurement.reason = threshold_verdict(
            values[best], claim["number"], claim["tolerance"])
        measurement.reason = f"best, {best}: {measurement.reason}"
        return measurement
    return None


def paired_effect(claim: dict, evidence: Evidence) -> Measurement | None:
    """Per prompt, variant − versus in the metric (oriented so > 0 is better), bootstrap over
    prompts (the images of one prompt are not independent)."""
    from ..quality.stats import bootstrap_mean, per_prompt, status_of

    m, frame = claim["measure"], evidence.per_image
    if frame is None or m["metric"] not in frame:
        return None
    groups = {v: frame[frame.variant == v] for v in (m["variant"], m["versus"])}
    if any(g.empty or status_of(g, m["metric"]) != "ok" for g in groups.values()):
        return None
    new, old = (per_prompt(groups[v], m["metric"]) for v in (m["variant"], m["versus"]))
    common = new.index.intersection(old.index)
    sign = 1.0 if m["better"] == "higher" else -1.0
    diff = sign * (new[common] - old[common]).to_numpy(dtype=float)
    mean, low, high = bootstrap_mean(diff, 0.95, 2000, 0)
    text = (f"{m['metric'].upper()} {m['variant']} {new[common].mean():.4f} vs {m['versus']} "
            f"{old[common].mean():.4f}; improvement {mean:.4f}")
    measurement = Measurement(text, f"this run, {len(common)} prompts")
    measurement.verdict, measurement.reason = effect_verdict(low, high)
    return measurement


def sweep_fit(claim: dict, evidence: Evidence) -> Measurement | None:
    fit = evidence.sweep_fit
    if fit is None:
        return None
    measurement = Measurement(f"R² = {fit['r2']:.3f} over {fit['n_runs']} runs, {fit['n_cells']} cells",
                              "this run's sweep, the seed's fit_model.py procedure")
    measurement.verdict, measurement.reason = fit_verdict(fit)
    return measurement


def sweep_trend(claim: dict, evidence: Evidence) -> Measurement | None:
    """Means over seeds and prompts per (step, level); in each group of the other axis, does the
    column rise strictly along the claim's axis? Identical images' infinite PSNR is capped."""
    runs, m = evidence.sweep_runs, claim["measure"]
    if runs is None or m["column"] not in runs:
        return None
    other = "level" if m["axis"] == "step" else "step"
    cap = (evidence.sweep_fit or {}).get("psnr_cap_db", 100.0)
    values = runs[m["column"]].astype(float).clip(upper=cap)
    means = runs.assign(value=values).groupby([other, m["axis"]]).value.mean()
    rising = falling = 0
    groups = means.groupby(level=0)
    for _, series in groups:
        steps = np.diff(series.to_numpy())
        rising += bool((steps > 0).all())
        falling += bool((steps < 0).all())
    level = str(runs.level_name.iloc[0]) if "level_name" in runs else "level"
    axis = level if m["axis"] == "level" else "step"
    by_axis = means.groupby(level=1).mean()
    text = f"mean {m['column']} by {axis}: " + ", ".join(f"{k:g}: {v:.3g}" for k, v in by_axis.items())
    measurement = Measurement(text, f"this run's sweep, {runs.seed.nunique()} seeds")
    measurement.verdict, measurement.reason = trend_verdict(rising, falling, groups.ngroups, m["expect"])
    return measurement


def diffc_means(rd: pd.DataFrame, metric: str) -> pd.DataFrame:
    coded = rd[rd.method == "diffc"].replace([np.inf, -np.inf], np.nan)
    return (coded.groupby(["model", "recon_timestep"], as_index=False)
            .agg(bpp=("bpp", "mean"), value=(metric, "mean")).sort_values(["model", "bpp"]))


def diffc_monotone(claim: dict, evidence: Evidence) -> Measurement | None:
    rd, metric = evidence.rd, claim["measure"]["metric"]
    if rd is None or metric not in rd:
        return None
    means = diffc_means(rd, metric)
    rising = falling = 0
    for _, group in means.groupby("model"):
        steps = np.diff(group.value.to_numpy())
        rising += bool((steps > 0).all())
        falling += bool((steps < 0).all())
    text = "; ".join(f"{r.bpp:.3f} bpp: {r.value:.2f}" for r in means.itertuples())
    measurement = Measurement(f"mean {metric} — {text}", f"this run's DiffC, {rd.image.nunique()} images")
    measurement.verdict, measurement.reason = trend_verdict(rising, falling, means.model.nunique(), "rises")
    return measurement


def diffc_vae_bound(claim: dict, evidence: Evidence) -> Measurement | None:
    rd, metric = evidence.rd, claim["measure"]["metric"]
    if rd is None or metric not in rd or not (rd.method == "vae").any():
        return None
    means = diffc_means(rd, metric)
    vae = rd[rd.method == "vae"].groupby("model")[metric].mean()
    best = means.loc[means.groupby("model").value.idxmax()].set_index("model")
    excess = float((best.value - vae.reindex(best.index)).max())
    text = "; ".join(f"best DiffC {b.value:.2f} at t={b.recon_timestep} vs VAE round trip {vae[model]:.2f}"
                     for model, b in best.iterrows())
    measurement = Measurement(f"mean {metric}: {text}", f"this run's DiffC, {rd.image.nunique()} images")
    measurement.verdict, measurement.reason = bound_verdict(excess, "dB" if metric == "psnr" else "")
    return measurement


def variant_quality(claim: dict, evidence: Evidence) -> Measurement | None:
    m, summary = claim["measure"], evidence.summary
    if summary is None:
        return None
    row = summary[(summary.variant == m["variant"]) & (summary.metric == m["metric"])]
    if row.empty or row.iloc[0].status != "ok":
        return None
    r = row.iloc[0]
    return Measurement(f"{m['metric'].upper()} vs the reference {r['mean']:.4f} "
                       f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", f"this run, {int(r.n_prompts)} prompts")


MEASURES = {"gpu_speedup": gpu_ratio, "gpu_memory_reduction": gpu_ratio,
            "paired_effect": paired_effect, "sweep_fit": sweep_fit, "sweep_trend": sweep_trend,
            "diffc_monotone": diffc_monotone, "diffc_vae_bound": diffc_vae_bound,
            "variant_quality": variant_quality}


def check_claim(claim: dict, evidence: Evidence) -> dict:
    measurement = MEASURES[claim["measure"]["kind"]](claim, evidence)
    if measurement is None:
        verdict, reason = NOT_MEASURED, f"measured by {claim['measured_by']}"
        measurement = Measurement("—", "—")
    elif claim["source_form"] == "figure":
        verdict, reason = NOT_COMPARABLE, ("the seed gives this result only in a figure, no number "
                                           "to meet; ours is shown for reference")
    else:
        verdict, reason = measurement.verdict, measurement.reason
    number = claim["number"]
    return {"seed": claim["seed"], "claim": claim["claim"],
            "seed's number": "—" if number is None else (f"{number:g}x" if claim["unit"] == "x"
                                                        else f"{number:.0%}" if claim["unit"] == "fraction"
                                                        else f"{number:g}"),
            "seed's protocol": claim["protocol"], "our measurement": measurement.text,
            "measured on": measurement.where, "protocol differences": claim["differences"],
            "verdict": verdict, "why": reason}


def claims_table(claims: list[dict], evidence: Evidence) -> pd.DataFrame:
    return pd.DataFrame([check_claim(c, evidence) for c in claims])


# ---- the report section ----

def evidence_from(ctx: ReportContext) -> Evidence:
    from ..accel import measure

    def csv(name):
        return pd.read_csv(ctx.inputs[name][0]) if ctx.has(name) else None

    sweep = ctx.inputs.get("sweep", [])
    sweep_csv = next((p for p in sweep if p.endswith("sweep.csv")), None)
    sweep_json = next((p for p in sweep if p.endswith("fit.json")), None)
    per_image = (pd.concat([pd.read_csv(p) for p in ctx.inputs["per_image"]], ignore_index=True)
                 if ctx.has("per_image") else None)
    return Evidence(
        gpu_results=list(ctx.inputs.get("gpu_results") or measure.committed_results()),
        per_image=per_image, summary=csv("summary"),
        sweep_runs=pd.read_csv(sweep_csv) if sweep_csv else None,
        sweep_fit=json.loads(Path(sweep_json).read_text()) if sweep_json else None,
        rd=csv("diffc"))


def claims_section(ctx: ReportContext) -> Section | None:
    path = (ctx.inputs.get("claims") or [str(CLAIMS_PATH)])[0]
    table = claims_table(load_claims(path), evidence_from(ctx))
    counts = table.verdict.value_counts()
    summary = ", ".join(f"{n} {html.escape(v)}" for v, n in counts.items())
    glance = table[["seed", "claim", "seed's number", "our measurement", "verdict"]]
    details = table[["seed", "claim", "verdict", "why", "protocol differences", "measured on"]]
    body = (f"<p>{len(table)} claims of the seed projects, each with our measurement and a verdict "
            f"from the rules in <code>sdsqueeze.report.claims</code>: {summary}. GPU numbers come "
            "from the committed benchmark runs (each ratio inside one run), quality numbers from "
            "this run.</p>"
            + table_html(glance, "The seeds' claims against our measurements", wrap=True)
            + "<details><summary>Why each verdict, the protocol differences, and where each number was "
              "measured</summary>" + table_html(details, wrap=True) + "</details>"
            + source_note(path, *ctx.inputs.get("gpu_results", [])[-1:]))
    return Section("The seeds' claims", body, "claims")


def main() -> None:
    """Print the claims that the committed GPU runs settle (the others need a pipeline run)."""
    from ..accel import measure

    table = claims_table(load_claims(), Evidence(gpu_results=measure.committed_results()))
    measured = table[table.verdict != NOT_MEASURED]
    print(measured[["claim", "our measurement", "measured on", "verdict", "why"]].to_string(index=False))


if __name__ == "__main__":
    main()
