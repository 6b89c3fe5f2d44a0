# The sweep's grid (checked with the whole config: sdsqueeze.config.check_semantics) and path
# helpers; rules in rules/sweep.smk.
from sdsqueeze.sweep.plan import grid_from_config

SWEEP = config["sweep"]
if SWEEP["enabled"]:
    SWEEP_GRID = grid_from_config(config)
    SWEEP_OPERATOR = SWEEP_GRID.operator.name
    SWEEP_SHARDS = list(range(SWEEP_GRID.n_shards))


def sweep_dir(model=MODEL):
    return f"results/sweep/{model}/{SWEEP_OPERATOR}"


def sweep_outputs():
    """What the report reads from the sweep; empty when the sweep is off."""
    if not SWEEP["enabled"]:
        return []
    d = sweep_dir()
    return [f"{d}/sweep.csv", f"{d}/evaluations.json", f"{d}/fit/fit.json",
            f"{d}/fit/surface.png", f"{d}/fit/heatmap.png", f"{d}/fit/residuals.png"]


