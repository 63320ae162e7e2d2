#!/bin/bash
# Runs inside the evaluation container (one exec): apply the task's hidden bug and test patch,
# apply the submitted patch with SWE-bench's fallback chain, then run the selected tests.
# Markers on stdout tell the host what happened; exit codes 90/91 are ours, 124 the test
# timeout's, others pytest's.
set -u
W=/tmp/agentao
cd /repo || exit 92
for f in bug test; do
  if [ -s "$W/$f.diff" ]; then
    if ! { git apply "$W/$f.diff" && git add -A && git commit -qm "agentao: $f"; }; then
      echo "AGENTAO_TASK_BROKEN $f"
      exit 90
    fi
  fi
done
rm -f "$W/bug.diff" "$W/test.diff"
undo() { git reset -q --hard; git clean -fdq -e '*.egg-info'; }
if git apply -v "$W/model.diff"; then
  method=git_apply
elif undo && git apply -v --3way "$W/model.diff"; then
  method=git_apply3way
elif undo && patch --batch --forward --fuzz=5 -p1 -i "$W/model.diff"; then
  method=patch_fuzz
else
  echo "AGENTAO_APPLY_FAILED"
  exit 91
fi
echo "AGENTAO_APPLIED $method"
# Same pytest options as the forge's baseline (tasks/baseline.rs): node ids relative to /repo,
# the project's addopts ignored (they name plugins the image may lack), no random order.
exec timeout -k 2 "${AGENTAO_TEST_TIMEOUT:-300}" python -m pytest -p no:cacheprovider -p no:randomly \
  --rootdir=/repo -o addopts= -q --tb=short -o junit_family=xunit1 --junitxml="$W/junit.xml" "$@"
