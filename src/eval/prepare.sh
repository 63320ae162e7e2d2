#!/bin/bash
# The setup of an evaluation container, run as root when the container is made: for a pooled
# one while it waits for its request, so the evaluation does not wait for this. Nothing
# submitted exists yet; a failure here is the task's (an environment error), never a patch's.
#
# The task's hidden bug and test patch are applied to /repo and committed; `prepared` says
# so to the apply phase (`apply.sh`), which refuses to run without it.
set -u
W=/agentao
cd /repo || { echo "no /repo in the image" >&2; exit 90; }
for f in bug test; do
  if [ -s "$W/$f.diff" ]; then
    if ! { git apply "$W/$f.diff" && git add -A && git commit -qm "agentao: $f"; } >"$W/prepare.log" 2>&1; then
      echo "applying the task's $f patch failed:" >&2
      tail -c 4000 "$W/prepare.log" >&2
      exit 90
    fi
  fi
done
rm -f "$W/bug.diff" "$W/test.diff" "$W/prepare.log"
git rev-parse HEAD >"$W/prepared"
