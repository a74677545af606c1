#!/bin/bash
# How the runs-table captures in README.md and docs/tui.md were made: real runs in a fresh registry,
# the real `hrm-tui` in a tmux window of the given size, `tmux capture-pane -p` once run 8 is in its
# second stage, with runs 3 and 2 marked. Takes about 5 minutes (the runs sleep; the CPU stays idle).
#
#   docs/capture-dashboard.sh [DIR] [COLUMNS] [ROWS]      (defaults: a new temporary folder, 120, 40)
set -euo pipefail
HRM=${HRM:-hrm}
HRM_TUI=${HRM_TUI:-hrm-tui}
dir=${1:-$(mktemp -d)}
cols=${2:-120}
rows=${3:-40}
mkdir -p "$dir" && cd "$dir"

for seed in 1 2 3; do $HRM run smoke --epochs 8 --seed $seed --wait; done
$HRM run smoke --epochs 4 --fail-at-epoch 3 --layers 4 --wait || true
$HRM run smoke --epochs 60 --sleep 0.8 --stages 2 --wait
$HRM run smoke --epochs 5 --layers 4 --seed 9 --wait
cancelled=$($HRM run smoke --epochs 100 --sleep 1 --stages 2 2>/dev/null)
sleep 6 && $HRM cancel "$cancelled" && sleep 3
training=$($HRM run smoke --epochs 150 --noisy --sleep 1 --stages 2 2>/dev/null)

stage_of() { $HRM ls --json --last 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["runs"][0]["progress"]["stage"] or 0)'; }
until [ "$(stage_of)" = 2 ]; do sleep 5; done
sleep 20

session=hrm-capture-$$
tmux new-session -d -s "$session" -x "$cols" -y "$rows" -c "$dir" "$HRM_TUI"
sleep 5
tmux send-keys -t "$session" Down Down Down Down Down && sleep 0.5   # the cursor on run 3
tmux send-keys -t "$session" Space && sleep 0.5                      # mark 3; the cursor moves to run 2
tmux send-keys -t "$session" Space && sleep 1.5                      # mark 2
tmux capture-pane -p -t "$session"
tmux kill-session -t "$session"
$HRM cancel "$training" >/dev/null
