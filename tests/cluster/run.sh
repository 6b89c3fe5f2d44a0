#!/usr/bin/env bash
# The pipeline on a real (single-node) SLURM, through profiles/slurm. Needs root on Debian.
#   bash tests/cluster/run.sh        (called by .ci/run; python/snakemake taken from PATH)
# 1. brings up SLURM (tests/cluster/slurm.sh up; down again on exit, by pid);
# 2. runs .test/cluster/config.yaml locally and through the profile, in two copies of the
#    workflow, asserts that every non-local job went through sbatch, and compares the outputs
#    byte for byte (tests/cluster/compare_outputs.py);
# 3. a job that fails once is retried per the profile; a job that always fails is reported;
# 4. a cluster run killed mid-generation resumes (--unlock, then the profile's --rerun-incomplete)
#    and ends with the same images as the local run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/cluster
WORK=${SDSQ_CLUSTER_WORK:-/tmp/sdsq-cluster-test}
PROFILE=(--profile "$ROOT/profiles/slurm" --workflow-profile "$ROOT/profiles/slurm-ci")
T0=$SECONDS
TIMINGS=()

step() { echo "== [cluster test $((SECONDS - T0)) s] $*"; }
trap 'echo "CLUSTER TEST FAILED: line $LINENO exited with status $?" >&2' ERR
fail() { echo "CLUSTER TEST FAILED: $*" >&2; exit 1; }
timed() {  # timed LABEL CMD...: run, remember the wall time, return the command's status
    local label=$1 t=$SECONDS rc=0
    shift
    "$@" || rc=$?
    TIMINGS+=("$label: $((SECONDS - t)) s")
    return $rc
}

if [ "$(id -u)" != 0 ] && ! command -v sbatch >/dev/null; then
    fail "needs root (to install and start SLURM) or a running SLURM; run it in CI or as root"
fi
python3 -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
    || fail "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"

copy_workflow() {  # copy_workflow DEST: the checkout's files, with .test/cluster/config.yaml as config.yaml
    mkdir -p "$1"
    (cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$1"
    cp "$ROOT/.test/cluster/config.yaml" "$1/config.yaml"
}

slurm_ids_in() { grep -oE "submitted with SLURM jobid [0-9]+" "$1" | awk '{print $NF}'; }

rm -rf "$WORK"
mkdir -p "$WORK"
trap 'bash "$HERE/slurm.sh" down' EXIT
timed "SLURM install + start" bash "$HERE/slurm.sh" up

# --- 2. the same small experiment, locally and through the profile -------------------------------
copy_workflow "$WORK/local"
copy_workflow "$WORK/cluster"
step "local run"
timed "local run" bash -c "cd '$WORK/local' && snakemake --cores 2 --quiet > run.log 2>&1" \
    || { tail -30 "$WORK/local/run.log"; fail "local run"; }
step "cluster run (profiles/slurm + profiles/slurm-ci)"
timed "cluster run" bash -c "cd '$WORK/cluster' && snakemake ${PROFILE[*]} > run.log 2>&1" \
    || { tail -40 "$WORK/cluster/run.log"; fail "cluster run"; }

# Every job that is not a localrule ran as a SLURM job: its id is in the log, its SLURM log shows
# the rule finishing inside that job.
mapfile -t ids < <(slurm_ids_in "$WORK/cluster/run.log")
[ "${#ids[@]}" -gt 0 ] || fail "no SLURM job ids in the cluster run's log"
for id in "${ids[@]}"; do
    job_log=$(find "$WORK/cluster/.snakemake/slurm_logs" -name "$id.log" | head -1)
    [ -n "$job_log" ] || fail "no SLURM log for job $id"
    grep -q "Finished jobid" "$job_log" || fail "SLURM job $id ($job_log) did not finish its rule"
done
for rule in materialize_model prompts generate metrics_variant metrics_summary; do
    grep -rqs "^ *rule $rule:" "$WORK/cluster/.snakemake/slurm_logs" || fail "rule $rule never ran in a SLURM job"
done
echo "SLURM jobs: ${#ids[@]} submissions (ids ${ids[*]})"
step "comparing local and cluster outputs"
python3 "$HERE/compare_outputs.py" "$WORK/local" "$WORK/cluster" || fail "cluster outputs differ from the local run"

# --- 3. retries and failure reporting -----------------------------------------------------------
RETRY=(snakemake "${PROFILE[@]}" -s "$HERE/retry/Snakefile" -d "$WORK/retry")
step "a job failing on its first attempt is retried"
timed "retry test" bash -c "${RETRY[*]} flaky.txt > '$WORK/retry-flaky.log' 2>&1" \
    || { tail -30 "$WORK/retry-flaky.log"; fail "flaky job not recovered by the profile's retries"; }
cat "$WORK/retry/attempts.log"
[ "$(grep -c '^attempt' "$WORK/retry/attempts.log")" = 2 ] || fail "expected exactly 2 attempts of the flaky job"
[ "$(slurm_ids_in "$WORK/retry-flaky.log" | wc -l)" = 2 ] || fail "expected 2 SLURM submissions of the flaky job"
step "a job failing on every attempt is reported and fails the run"
if "${RETRY[@]}" never.txt > "$WORK/retry-fail.log" 2>&1; then fail "an always-failing job did not fail the run"; fi
grep -q "Error in rule always_fails" "$WORK/retry-fail.log" || fail "failure not reported"
grep -qE "SLURM-job '[0-9]+' failed" "$WORK/retry-fail.log" || fail "failure report does not name the SLURM job"
n_fail=$({ slurm_ids_in "$WORK/retry-fail.log" || true; } | wc -l)
[ "$n_fail" = 3 ] || fail "expected 1 + 2 retries = 3 submissions of the failing job, saw $n_fail"
grep -E "Error in rule|SLURM-job" "$WORK/retry-fail.log" | sort | uniq -c

# --- 4. an interrupted cluster run resumes --------------------------------------------------------
copy_workflow "$WORK/resume"
step "cluster run of generate_all, killed once the first shard exists"
cd "$WORK/resume"
snakemake "${PROFILE[@]}" generate_all > run1.log 2>&1 &
main_pid=$!
for _ in $(seq 600); do
    compgen -G "results/images/*/*/shard-*/manifest.csv" >/dev/null && break
    kill -0 "$main_pid" 2>/dev/null || fail "the run to interrupt ended before any shard was written"
    sleep 1
done
kill -9 "$main_pid"  # the login node's process dies; its SLURM jobs are cancelled as after a time-out
wait "$main_pid" 2>/dev/null || true
mapfile -t orphans < <(slurm_ids_in run1.log)
scancel "${orphans[@]}" 2>/dev/null || true
sleep 5
n_done=$({ compgen -G "results/images/*/*/shard-*/manifest.csv" || true; } | wc -l)
n_marked=$({ find .snakemake/incomplete -type f 2>/dev/null || true; } | wc -l)
echo "interrupted; cancelled SLURM jobs ${orphans[*]}; left: $n_done of 4 shards, $n_marked incomplete markers"
snakemake --unlock > /dev/null 2>&1
if snakemake -n generate_all > dry-after-kill.log 2>&1; then
    echo "after the kill a plain dry run plans: $(grep -cE '^ *rule generate:' dry-after-kill.log) generate jobs"
else
    echo "after the kill a plain dry run refuses:"; grep -iE "incomplete" dry-after-kill.log | head -3
fi
step "resuming with the profile (rerun-incomplete)"
timed "resume run" bash -c "snakemake ${PROFILE[*]} generate_all > run2.log 2>&1" \
    || { tail -30 run2.log; fail "resumed cluster run"; }
if [ "$n_done" -lt 4 ] && [ "$(slurm_ids_in run2.log | wc -l)" = 0 ]; then
    fail "shards were missing but the resumed run submitted nothing to SLURM"
fi
echo "resumed run: $(slurm_ids_in run2.log | wc -l) SLURM submissions"
grep -iE "incomplete" run2.log | sort | uniq -c | head -5 || true
python3 "$HERE/compare_outputs.py" --images-only "$WORK/local" "$WORK/resume" \
    || fail "the resumed run's images differ from the local run"
cd "$ROOT"

step "done"
printf '  %s\n' "${TIMINGS[@]}"
echo "cluster test: all checks passed in $((SECONDS - T0)) s"
