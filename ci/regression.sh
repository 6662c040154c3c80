#!/usr/bin/env bash
# Run the scenarios on a baseline kernel, then on a candidate kernel, and compare the two runs.
#
#   ci/regression.sh BASELINE_SPEC CANDIDATE_SPEC [SCENARIO PATHS...]
#   ci/regression.sh debian:6.1 debian:6.12 scenarios/memory scenarios/pids
#   ci/regression.sh debian:6.12 build:mine            # your kernel against Debian's
#
# The scenario paths default to this repository's scenarios/. The two kernels are matched by
# (scenario, hierarchy) since they differ (`kharness compare` says so in its output).
#
# Environment:
#   RESULTS            where the runs go (default results/regression-<time>): baseline/,
#                      candidate/ and compare.json
#   KHARNESS_RUN_OPTS  more options for both runs, split on blanks, e.g. "--hierarchy v2 --jobs 2"
#   KH                 what to run instead of this repository's ./kh
#
# Exit status: the comparison's: 0 no regression, 1 a regression (a cell that passed, or was
# skipped, on the baseline fails or errors on the candidate), 2 bad input or a run that could
# not record any result. A scenario failing on both kernels is not a regression.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 BASELINE_SPEC CANDIDATE_SPEC [SCENARIO PATHS...]" >&2
    exit 2
fi
baseline=$1
candidate=$2
shift 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=("$repo/scenarios/")
kh=${KH:-$repo/kh}
out=${RESULTS:-results/regression-$(date +%Y%m%d-%H%M%S)}
read -ra opts <<< "${KHARNESS_RUN_OPTS:-}"

run() {  # NAME SPEC
    local status=0
    "$kh" run "${paths[@]}" --kernel "$2" --results "$out/$1" "${opts[@]}" || status=$?
    # exit 1 (a scenario failed) and 2 (an error, e.g. a panic) still leave results to compare;
    # a run without results.jsonl could not start at all (a bad spec, a bad scenario)
    if [ ! -s "$out/$1/results.jsonl" ]; then
        echo "regression.sh: the $1 run on $2 recorded no results (exit status $status)" >&2
        exit 2
    fi
}

run baseline "$baseline"
run candidate "$candidate"
status=0
"$kh" compare "$out/baseline" "$out/candidate" --json "$out/compare.json" || status=$?
echo "regression.sh: runs and compare.json in $out" >&2
exit "$status"
