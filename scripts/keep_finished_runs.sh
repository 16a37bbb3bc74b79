#!/usr/bin/env bash
# Stage the finished runs under the given folders for a commit, so that a sweep longer than one
# machine's stay (examples/reproduce.py) continues elsewhere: a clone holds them, the sweep skips
# them and its report (re-)evaluates them. results/ is git-ignored; this adds, with -f, only
# what a finished run needs to be reported on and re-evaluated: config.json, progress.csv,
# learning_curve.png and the final weights in models/ (not the resumable checkpoint, which holds
# the optimiser state and, off-policy, the replay buffer). A run is finished when its final
# weights exist (models/actor_agent0.pt: the test harl/experiments/sweep.py run_state makes;
# keep the two alike). Reports' re-evaluation caches come along.
#
#     bash scripts/keep_finished_runs.sh results/football [more folders ...]
#     git commit -m "..."
set -euo pipefail
if (($# == 0)); then
  echo "usage: bash scripts/keep_finished_runs.sh FOLDER [FOLDER ...]  (e.g. results/football)" >&2
  exit 2
fi
kept=0
for root in "$@"; do
  if [[ ! -d "$root" ]]; then
    echo "no such folder: $root" >&2
    exit 2
  fi
  while IFS= read -r -d '' final; do
    run_dir=$(dirname "$(dirname "$final")")
    files=("$run_dir/config.json" "$run_dir/progress.csv")
    [[ -f "$run_dir/learning_curve.png" ]] && files+=("$run_dir/learning_curve.png")
    for weights in "$run_dir"/models/*.pt; do
      [[ $(basename "$weights") == checkpoint* ]] || files+=("$weights")
    done
    git add -f -- "${files[@]}"
    echo "kept $run_dir (${#files[@]} files)"
    kept=$((kept + 1))
  done < <(find "$root" -path '*/models/actor_agent0.pt' -print0 | sort -z)
  while IFS= read -r -d '' cache; do
    git add -f -- "$cache"
    echo "kept $cache"
  done < <(find "$root" -name reevaluations.json -print0)
done
echo "$kept finished run(s) staged; commit them with git commit"
