#!/usr/bin/env bash
# A behaviour-preserving change proves itself: nine short fixed-seed runs covering the mechanisms (periods, advantage
# and goal rewards, addressed instructions, learned messages on a DAG, learners per level, local critics, MAPPO with
# value normalisation, IPPO, the mock task), written to OUT. Run it before and after a change, then compare:
#
#     git stash; bash benchmarks/fixed_seed_runs.sh /tmp/before; git stash pop
#     bash benchmarks/fixed_seed_runs.sh /tmp/after
#     python benchmarks/compare_runs.py /tmp/before /tmp/after    # "same" for every run, else the first difference
#
# About 70 s on one core. Uses the `rn` of the active environment.
set -euo pipefail
OUT=$1; mkdir -p "$OUT"
export OMP_NUM_THREADS=1
C="--frames 1200 --frames-per-batch 600 --max-steps 20 --epochs 2 --minibatch-size 200 --eval-every 1 --eval-envs 2 --seed 3 --no-progress --force"
rn train --algo rn --graph tree:2 $C --out "$OUT/rn-tree2" >/dev/null
rn train --algo rn --graph tree:2 --periods 1,5 --vertex-reward advantage:0.5 --observe-clock $C --out "$OUT/rn-p5-adv" >/dev/null
rn train --task vmas/simple_spread --algo rn --graph tree:4 --instruct addressed --periods 1,5 --vertex-reward goal:pos --goal-warmup 600 --value-norm --normalize-advantage $C --out "$OUT/rn-goal" >/dev/null
rn train --task vmas/simple_spread --algo rn --graph tree:4 --periods 1,5 --vertex-reward goal:pos,beta=0.1,normalize=true $C --out "$OUT/rn-goal-norm" >/dev/null
rn train --algo rn --graph dag --phi learned --beta 0.5 --level-critics group,local $C --out "$OUT/rn-dag-learned" >/dev/null
rn train --algo rn --graph tree:2,2 --critic local --periods 1,2,4 $C --out "$OUT/rn-tree22" >/dev/null
rn train --algo mappo --value-norm $C --out "$OUT/mappo" >/dev/null
rn train --algo ippo $C --out "$OUT/ippo" >/dev/null
rn train --task mock --algo rn --graph tree:2 $C --out "$OUT/mock" >/dev/null
