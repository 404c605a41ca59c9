#!/usr/bin/env bash
# Installs the pinned tools the checks need into ./.bin (idempotent).
# Sourced by .ci/run and bench/run.sh; puts ./.bin first on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GOBIN="$root/.bin"
export PATH="$GOBIN:$PATH"

# name  module@version
tools=(
  "buf github.com/bufbuild/buf/cmd/buf@v1.75.0"
  "grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
  "ghz github.com/bojand/ghz/cmd/ghz@v0.121.0"
)

# install_tools NAME... installs the named tools that are not there yet.
install_tools() {
  local want spec name
  for want in "$@"; do
    for spec in "${tools[@]}"; do
      name=${spec%% *}
      [ "$name" = "$want" ] || continue
      if [ ! -x "$GOBIN/$name" ]; then
        echo "installing ${spec#* }" >&2
        go install "${spec#* }"
      fi
    done
  done
}
