#!/usr/bin/env bash
# Runs the study's queued commands one after another (each line of QUEUE is arguments to scripts/study.py).
# Lines may be appended while it runs; a line is run once (its number is recorded in DONE); safe to restart:
# every run is resumable, so a line cut off part-way is simply run again.
#   nohup bash scripts/study_queue.sh evals/study/queue.txt > evals/study/queue.log 2>&1 &
# STUDY_THREADS sets torch's threads: on a CPU shared with other jobs, 1 thread per job avoids OpenMP threads
# waiting for each other (measured here: 2 threads under contention ran ~10x slower than alone).
set -u
export OMP_NUM_THREADS=${STUDY_THREADS:-2}
QUEUE=${1:-evals/study/queue.txt}
DONE=${QUEUE%.txt}.done
touch "$QUEUE" "$DONE"
cd "$(dirname "$0")/.."
while true; do
  n=0; ran=0
  while IFS= read -r line; do
    n=$((n + 1))
    [ -z "$line" ] && continue
    grep -qx "$n" "$DONE" && continue
    echo "[$(date -u +%FT%TZ)] start $n: $line"
    if HF_HUB_OFFLINE=1 .venv/bin/python scripts/study.py $line; then
      echo "$n" >> "$DONE"; echo "[$(date -u +%FT%TZ)] done $n"
    else
      echo "[$(date -u +%FT%TZ)] FAILED $n (exit $?)"; echo "$n" >> "$DONE"
    fi
    ran=1
    break
  done < "$QUEUE"
  [ "$ran" = 0 ] && sleep 30
done
