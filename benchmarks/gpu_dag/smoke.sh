#!/usr/bin/env bash
# The GPU smoke DAG (config/sd15-gpu-smoke.yaml) through Snakemake itself, from scratch, then again
# (which must say "Nothing to be done"), with the evidence packed for docs/gpu-run/.
#   bash benchmarks/gpu_dag/smoke.sh run STATE_DIR [JOBS_PER_GPU]   # in the foreground (or under setsid nohup)
# It runs in a copy of the workflow, STATE_DIR/workflow: a lent machine may replace the checkout it
# was sent (the next command's upload) while the DAG still runs.
#   bash benchmarks/gpu_dag/smoke.sh wait STATE_DIR OUT_DIR SECONDS   # poll; copy the packs to OUT_DIR when done
# Run from the workflow's root, with snakemake and the project's packages importable by python3.
set -uo pipefail
mode=$1 state=$(realpath -m "$2")
mkdir -p "$state"

if [ "$mode" = run ]; then
    jobs_per_gpu=${3:-4}
    mkdir -p "$state/workflow"
    tar cf - --exclude=./results --exclude=./resources --exclude=./logs --exclude=./.snakemake . | tar xf - -C "$state/workflow"
    cd "$state/workflow" || exit 1
    gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
    export SDSQ_JOBS_PER_GPU=$jobs_per_gpu HF_HUB_OFFLINE=1
    config=(--configfile config/sd15.yaml config/sd15-gpu-smoke.yaml)
    command=(python3 -m snakemake --profile profiles/local --resources gpu=$((gpus * jobs_per_gpu)) "${config[@]}")
    echo "${command[*]}" > "$state/command.txt"
    nvidia-smi --query-gpu=timestamp,name,uuid,utilization.gpu,memory.used --format=csv -l 1 > "$state/gpu_samples.csv" &
    sampler=$!
    began=$(date +%s.%N)
    "${command[@]}" > "$state/run1.log" 2>&1
    echo "$?" > "$state/run1.rc"
    ended=$(date +%s.%N)
    kill "$sampler"
    python3 -c "print(f'{$ended - $began:.1f}')" > "$state/run1.seconds"
    if [ "$(cat "$state/run1.rc")" = 0 ]; then
        "${command[@]}" > "$state/run2.log" 2>&1
        echo "$?" > "$state/run2.rc"
    fi
    python3 benchmarks/gpu_dag/pack.py . "$state" > "$state/pack.log" 2>&1
    echo "$?" > "$state/pack.rc"
    touch "$state/DONE"
elif [ "$mode" = wait ]; then
    out=$3 deadline=$(( $(date +%s) + $4 ))
    while [ ! -e "$state/DONE" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 15
        echo "$(date +%T) $(grep -c 'Finished job' "$state/run1.log" 2>/dev/null) jobs finished; $(tail -c 200 "$state/run1.log" 2>/dev/null | tr '\n' ' ')"
    done
    cp "$state"/*.tar.gz "$state"/run1.log "$out"/ 2>/dev/null
    if [ -e "$state/DONE" ]; then
        echo "DONE in $(cat "$state/run1.seconds") s; rc1=$(cat "$state/run1.rc") rc2=$(cat "$state/run2.rc" 2>/dev/null) pack=$(cat "$state/pack.rc")"
        tail -5 "$state/pack.log"
    else
        echo "still running"
    fi
    grep -h "Nothing to be done\|Exiting because a job execution failed\|Error in rule" "$state"/run*.log | head -20
    for log in $(grep -l "job failed" "$state/workflow/logs" -r 2>/dev/null | head -3); do echo "== $log"; tail -25 "$log"; done
fi
