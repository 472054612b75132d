#!/usr/bin/env bash
# Runs the study's queued commands one after another: each line of QUEUE holds arguments to scripts/study.py.
# Lines may be appended while it runs; a line is run once (its number is recorded in DONE). Safe to restart: every
# run is resumable, so a line cut off part-way is simply run again. Per-item logs committed under
# results/study/logs are restored first (a fresh clone resumes where the study stopped) and saved after each line.
#   nohup bash scripts/study_queue.sh > evals/study/queue.log 2>&1 &
# STUDY_THREADS sets torch's threads: on a CPU shared with other jobs, 1 thread per job avoids OpenMP threads
# waiting for each other (measured here: 2 threads under contention ran ~10x slower than alone).
set -u
cd "$(dirname "$0")/.."
QUEUE=${1:-results/study/queue.txt}
DONE=${2:-evals/study/queue.done}
export OMP_NUM_THREADS=${STUDY_THREADS:-2}
mkdir -p "$(dirname "$DONE")"
touch "$QUEUE" "$DONE"
PY=.venv/bin/python
HF_HUB_OFFLINE=1 $PY scripts/study.py --restore
while true; do
  n=0; ran=0
  while IFS= read -r line; do
    n=$((n + 1))
    [ -z "$line" ] && continue
    grep -qx "$n" "$DONE" && continue
    echo "[$(date -u +%FT%TZ)] start $n: $line"
    if HF_HUB_OFFLINE=1 $PY scripts/study.py $line; then
      echo "$n" >> "$DONE"; echo "[$(date -u +%FT%TZ)] done $n"
    else
      echo "[$(date -u +%FT%TZ)] FAILED $n (exit $?)"; echo "$n" >> "$DONE"
    fi
    HF_HUB_OFFLINE=1 $PY scripts/study.py --save > /dev/null
    ran=1
    break
  done < "$QUEUE"
  [ "$ran" = 0 ] && sleep 30
done
