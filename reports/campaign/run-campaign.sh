#!/usr/bin/env bash
# The campaign (issue 20): every part's exact command, in order, under one time budget.
#   make campaign BUDGET=150m      (or: reports/campaign/run-campaign.sh 150m)
#   PARTS=codes reports/campaign/run-campaign.sh 60m   runs only the named parts
#   (comma-separated: reference, codes, sweep-norse, sweep-inisim; default all, in that order)
# Each part skips what its store already holds and starts nothing that is not
# expected to finish before the shared deadline; a training stopped by the
# deadline resumes from its last epoch next time.  Rerun to continue; commit
# reports/campaign/ after each chunk (see PLAN.md).  While a chunk runs, never edit this file in place
# (bash reads a script as it goes): write the new version beside it and mv it over (git does the same).
set -euo pipefail
BUDGET="${1:?usage: run-campaign.sh BUDGET (e.g. 150m)}"
EFFMODEL="${EFFMODEL:-effmodel}"
HERE="$(cd "$(dirname "$0")" && pwd)"
read -r DEADLINE DEADLINE_EPOCH < <(python3 -c "
import re, sys, time, datetime
units = {'d': 86400, 'h': 3600, 'm': 60, 's': 1}
parts = re.findall(r'(\d+(?:\.\d+)?)([dhms])', sys.argv[1])
secs = sum(float(n) * units[u] for n, u in parts)
if secs <= 0:
    sys.exit('campaign: BUDGET must be a duration such as 150m or 2h30m, got ' + repr(sys.argv[1]))
end = int(time.time() + secs)
print(datetime.datetime.fromtimestamp(end).isoformat(timespec='seconds'), end)" "$BUDGET")
[ -n "${DEADLINE:-}" ] || exit 2
echo "campaign: budget $BUDGET, deadline $DEADLINE (local time)"
REFERENCE=SmallCNN1,DeepCNN1,LargeCNN1,MediumCNN1,SmallCNN2,DeepCNN2,LargeCNN2,MediumCNN2
DATA=()
[ -n "${DATA_DIR:-}" ] && DATA=(--data-dir "$DATA_DIR")

PARTS="${PARTS:-reference,codes,sweep-norse,sweep-inisim}"
wanted() { [[ ",$PARTS," == *",$1,"* ]]; }

part() {  # part NAME CMD...: run one part; a part that fails stops the campaign
  if [ "$(date +%s)" -ge "$((DEADLINE_EPOCH - 60))" ]; then
    echo "campaign: part $1 skipped: the deadline $DEADLINE is (nearly) reached"
    return 0
  fi
  echo "campaign: part $1"
  shift
  local start=$SECONDS
  "$@"
  echo "campaign: part took $((SECONDS - start)) s"
}

# 1-2. Reference, one network at a time, Norse then INIsim back to back, so that both simulate the same trained
#    model even when a later chunk runs newer code (the model cache key holds a hash of training.py):
#    the eight CNNs at the report's epochs (25 MNIST / 35 CIFAR-10), seed 0, T = 100 / 150, the INIsim
#    readout rule (--readout spikes, the default); Norse on all 10,000 test images, INIsim on the first 2,000.
if wanted reference; then
  for model in ${REFERENCE//,/ }; do
    part "reference-norse $model" "$EFFMODEL" run --simulator norse --models "$model" --deadline "$DEADLINE" \
        -o "$HERE/reference-norse" "${DATA[@]}"
    part "reference-inisim $model" "$EFFMODEL" run --simulator inisim --models "$model" --num-test 2000 \
        --deadline "$DEADLINE" -o "$HERE/reference-inisim" "${DATA[@]}"
  done
fi
# 3. Codes and ensembles (issue 24), Norse, on the reference networks' own trained models (the report's epochs,
#    seed 0), the first 1,000 test images, T = 100 / 150: rate-coded IF (the baseline, same images), time to first
#    spike (Rueckauer & Liu 2018) and adaptive spiking neurons (Zambrano et al.), one folder, so the report's
#    "Codes and ensembles" section compares them row by row; then ensembles of 2, 4 and 8 SmallCNN1 (members
#    trained alone, seeds 0..7).  Cheapest models first.
if wanted codes; then
  for model in SmallCNN1 SmallCNN2 DeepCNN2 DeepCNN1 LargeCNN1 MediumCNN1 LargeCNN2 MediumCNN2; do
    for code in "--coding rate" "--coding ttfs" "--option neuron=adaptive"; do
      part "codes-norse $model $code" "$EFFMODEL" run --simulator norse --models "$model" $code --num-test 1000 \
          --deadline "$DEADLINE" -o "$HERE/codes-norse" "${DATA[@]}"
    done
    if [ "$model" = SmallCNN1 ]; then
      part "codes-norse ensembles" "$EFFMODEL" run --simulator norse --num-test 1000 --deadline "$DEADLINE" \
          --models ensemble:SmallCNN1x2,ensemble:SmallCNN1x4,ensemble:SmallCNN1x8 -o "$HERE/codes-norse" "${DATA[@]}"
    fi
  done
fi
# 4. Sweep, Norse: 32 architectures (16 per dataset: conv depth 1-4 x dense depth 0-3, constant dense width,
#    widths chosen so |corr(depth, log params)| and |corr(depth, log neurons)| <= 0.3 within each dataset)
#    x seeds 0,1,2; full training split, early stopping (patience 3) within 15 (MNIST) / 30 (CIFAR-10) epochs;
#    the first 1,000 test images.  JOBS=2 uses both cores (a machine with nothing else to do).
if wanted sweep-norse; then
  part sweep-norse "$EFFMODEL" sweep --simulator norse --seeds 0,1,2 --num-test 1000 --jobs "${JOBS:-1}" \
      --deadline "$DEADLINE" -o "$HERE/sweep-norse" "${DATA[@]}"
fi
# 5. Sweep, INIsim cross-check: 12 of the same architectures (a balanced subset), seed 0, the same trained models.
if wanted sweep-inisim; then
  part sweep-inisim "$EFFMODEL" sweep --simulator inisim --seeds 0 --take 12 --num-test 1000 \
      --deadline "$DEADLINE" -o "$HERE/sweep-inisim" "${DATA[@]}"
fi
# 6. The report over every part that has stored something so far.
INPUTS=""
for p in reference-norse reference-inisim sweep-norse sweep-inisim codes-norse; do
  [ -f "$HERE/$p/effmodel.sqlite" ] && INPUTS="${INPUTS:+$INPUTS,}$HERE/$p"
done
if [ -n "$INPUTS" ]; then  # always, also past the deadline: it takes seconds
  echo "campaign: report"
  "$EFFMODEL" report --input "$INPUTS" --format html,md -o "$HERE/report"
fi
