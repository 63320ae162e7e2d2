#!/bin/bash
# The apply phase of an evaluation, run as root inside the evaluation container before any
# code of the repository runs (the tests run later, as another user, in a second exec).
#
# 1. The task's hidden bug and test patch are already committed in /repo: the container's
#    setup (`prepare.sh`) did that before the container was handed out.
# 2. The submitted patch is applied with SWE-bench's fallback chain (git apply, git apply
#    --3way, patch --fuzz) to a scratch index, or for `patch` to a scratch clone whose git
#    directory lives outside its work tree, so nothing the patch writes can reach /repo, a git
#    directory, or a hook or config git would run.
# 3. What applying changed is read from git itself (every file, with its mode, ignored files
#    included) and written as the canonical diff; that diff, not the submitted text, goes into
#    /repo. The host refuses the evaluation on what the change list shows before any test runs.
#
# Tool output goes to $W/apply.log; stdout carries only this script's marker lines.
# AGENTAO_TASK_BROKEN (the task's fault, an environment error) is only ever said before the
# submitted patch is touched; every failure after that is the patch's.
set -u
W=/agentao
R=$W/r
exec 3>&1 >"$W/apply.log" 2>&1
mark() { printf '%s\n' "$*" >&3; }
cd /repo || { mark "AGENTAO_TASK_BROKEN cd"; exit 90; }
[ "$(git rev-parse HEAD)" = "$(cat "$W/prepared" 2>/dev/null)" ] || { mark "AGENTAO_TASK_BROKEN setup"; exit 90; }
mkdir -m 0700 -p "$R"
# Where pytest will put test folders on sys.path (its rootdir-less "prepend" import mode):
# for each selected test's folder, the first folder upwards that is not a package. A new
# module there shadows whatever the tests import by that name.
# (Shell built-ins only in these loops: a process per entry costs milliseconds each.)
if [ -s "$W/testdirs" ]; then
  while IFS= read -r d; do
    while [ "$d" != "." ] && [ -f "/repo/$d/__init__.py" ]; do
      case $d in */*) d=${d%/*} ;; *) d=. ;; esac
    done
    mark "AGENTAO_BASEDIR $d"
    # What already lives there: a new name next to these can shadow an import (the root's
    # entries are listed below).
    [ "$d" = "." ] && continue
    for e in "/repo/$d"/* "/repo/$d"/.[!.]*; do
      [ -e "$e" ] && mark "AGENTAO_EXISTS $d/${e##*/}"
    done
  done <"$W/testdirs"
fi
for e in /repo/* /repo/.[!.]*; do
  [ -e "$e" ] && mark "AGENTAO_EXISTS ./${e##*/}"
done

# git's own methods apply to a scratch index only (nothing is written to any work tree);
# GNU patch needs files, so it gets a scratch clone whose git directory lives outside its
# work tree. Either way git lists what changed, ignored files included.
list_changes() {
  git diff --cached --raw -z --no-renames --no-abbrev HEAD >"$R/listing" \
    && git diff --cached --binary --no-renames --full-index --function-context HEAD >"$R/canonical.diff" \
    || { mark "AGENTAO_APPLY_FAILED listing"; exit 91; }
}
export GIT_INDEX_FILE=$W/model.index
if git read-tree HEAD && git apply --cached -v "$W/model.diff"; then
  method=git_apply
elif git read-tree HEAD && git apply --cached -v --3way "$W/model.diff"; then
  method=git_apply3way
fi
if [ -n "${method:-}" ]; then
  list_changes
  unset GIT_INDEX_FILE
else
  unset GIT_INDEX_FILE
  # On the capped tmpfs: whatever `patch` writes (copies included) stops at its size.
  S=/tmp/agentao-scratch/tree
  G=/tmp/agentao-scratch/git
  mkdir -m 0700 -p /tmp/agentao-scratch
  git clone -q --shared --separate-git-dir="$G" /repo "$S" \
    && git --git-dir="$G" config core.hooksPath /dev/null \
    && git --git-dir="$G" config core.fsmonitor false \
    || { mark "AGENTAO_TASK_BROKEN scratch"; exit 90; }
  # From here git reads only $G, whatever the patch writes into the work tree (a `.git`
  # there is just a file to git, and shows in the change list).
  export GIT_DIR=$G GIT_WORK_TREE=$S
  cd "$S" || { mark "AGENTAO_TASK_BROKEN scratch"; exit 90; }
  if patch --batch --forward --fuzz=5 -p1 -i "$W/model.diff"; then
    method=patch_fuzz
  else
    mark "AGENTAO_APPLY_FAILED"
    exit 91
  fi
  # Failures from here on are the patch's doing (a path git refuses, a full scratch space).
  git add -A -f || { mark "AGENTAO_APPLY_FAILED listing"; exit 91; }
  list_changes
  unset GIT_DIR GIT_WORK_TREE
fi
size=$(stat -c %s "$R/canonical.diff")
if [ "$size" -gt "${AGENTAO_MAX_CHANGE_BYTES:-2097152}" ]; then
  mark "AGENTAO_TOO_LARGE $size"
  exit 93
fi
cd /repo || exit 92
if [ -s "$R/canonical.diff" ] && ! git apply --index --binary "$R/canonical.diff"; then
  mark "AGENTAO_APPLY_FAILED repo"
  exit 91
fi
chmod 0755 "$R" && chmod 0644 "$R/canonical.diff"
mark "AGENTAO_APPLIED $method"
mark "AGENTAO_LISTING $(base64 -w0 "$R/listing")"
mark "AGENTAO_DIFF $(base64 -w0 "$R/canonical.diff")"
