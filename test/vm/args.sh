# shellcheck shell=bash
# Sourced by the wrappers around run.sh (critest.sh, e2e.sh), whose
# command lines are `[run.sh options] [-- options for the guest's command]`:
# moves to the checkout's top (REPO), puts Go on PATH, and splits the
# arguments into vmargs (before `--`, for run.sh) and guestargs (after it,
# for the command in the guest).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
export PATH=$PATH:/usr/local/go/bin

vmargs=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	vmargs+=("$1")
	shift
done
[ $# -gt 0 ] && shift
guestargs=("$@")
