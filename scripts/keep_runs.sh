#!/usr/bin/env bash
# Stage runs under the given folders for a commit, so that a sweep longer than one machine's stay
# (examples/reproduce.py) continues elsewhere: a clone holds them, its sweep skips the finished
# ones, resumes the stopped ones, and its report (re-)evaluates them. results/ is git-ignored;
# this adds, with -f, only the light files:
#   - a finished run (its final weights exist: models/actor_agent0.pt, the test
#     harl/experiments/sweep.py run_state makes; keep the two alike): config.json, progress.csv,
#     learning_curve.png and the final weights in models/, not the resumable checkpoint (an
#     earlier commit's copy of it is unstaged);
#   - with --stopped, also a stopped run (a models/checkpoint.pt, no final weights): config.json,
#     progress.csv, learning_curve.png and the checkpoint, when the checkpoint is at most
#     KEEP_RUNS_MAX_MB (default 20) MB. An on-policy checkpoint (weights, optimiser state, RNG
#     state) is under 1 MB on Football; an off-policy one holds the replay buffer (hundreds of MB)
#     and is named and left out. Stop the run with SIGTERM first so that its checkpoint is current.
# Reports' re-evaluation caches (reevaluations.json) come along. TensorBoard logs never do:
# progress.csv is the run's record.
#
#     bash scripts/keep_runs.sh [--stopped] results/football [more folders ...]
#     git commit -m "..."
set -euo pipefail
usage="usage: bash scripts/keep_runs.sh [--stopped] FOLDER [FOLDER ...]  (e.g. results/football)"
stopped=0
if [[ "${1:-}" == "--stopped" ]]; then
  stopped=1
  shift
fi
if (($# == 0)); then
  echo "$usage" >&2
  exit 2
fi
max_mb=${KEEP_RUNS_MAX_MB:-20}
if ! [[ "$max_mb" =~ ^[0-9]+$ ]]; then
  echo "KEEP_RUNS_MAX_MB must be a whole number of MB, got '$max_mb'" >&2
  exit 2
fi
for root in "$@"; do
  if [[ ! -d "$root" ]]; then
    echo "no such folder: $root" >&2
    exit 2
  fi
done

light_files() {  # the files every kept run carries
  local run_dir=$1
  files=("$run_dir/config.json" "$run_dir/progress.csv")
  [[ -f "$run_dir/learning_curve.png" ]] && files+=("$run_dir/learning_curve.png")
  return 0
}

kept=0
kept_stopped=0
for root in "$@"; do
  while IFS= read -r -d '' checkpoint_or_final; do
    models=$(dirname "$checkpoint_or_final")
    run_dir=$(dirname "$models")
    if [[ -f "$models/actor_agent0.pt" ]]; then
      [[ $(basename "$checkpoint_or_final") == actor_agent0.pt ]] || continue  # seen once, by its weights
      light_files "$run_dir"
      for weights in "$models"/*.pt; do
        [[ $(basename "$weights") == checkpoint* ]] || files+=("$weights")
      done
      git add -f -- "${files[@]}"
      git rm -q --cached --ignore-unmatch -- "$models/checkpoint.pt" >/dev/null
      echo "kept finished $run_dir (${#files[@]} files)"
      kept=$((kept + 1))
    elif ((stopped)); then
      size_mb=$(( ($(stat -c %s "$checkpoint_or_final") + 1048575) / 1048576 ))
      if ((size_mb > max_mb)); then
        echo "left out stopped $run_dir: its checkpoint is $size_mb MB (> $max_mb MB, KEEP_RUNS_MAX_MB;" \
          "an off-policy checkpoint holds the replay buffer)" >&2
        continue
      fi
      light_files "$run_dir"
      files+=("$checkpoint_or_final")
      git add -f -- "${files[@]}"
      echo "kept stopped $run_dir (${#files[@]} files, checkpoint $size_mb MB)"
      kept_stopped=$((kept_stopped + 1))
    fi
  done < <(find "$root" \( -path '*/models/actor_agent0.pt' -o -path '*/models/checkpoint.pt' \) -print0 | sort -z)
  while IFS= read -r -d '' cache; do
    git add -f -- "$cache"
    echo "kept $cache"
  done < <(find "$root" -name reevaluations.json -print0)
done
echo "$kept finished and $kept_stopped stopped run(s) staged; commit them with git commit"
