#!/usr/bin/env bash
# The pinned tools the checks and the benchmark use, installed into ./.bin
# from the Go module proxy. Source it, then call install_tools NAME...; it
# puts ./.bin first on PATH. This is the one place their versions are set.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GOBIN="$root/.bin"
export PATH="$GOBIN:$PATH"

# name  package  version
tools=(
  "buf github.com/bufbuild/buf/cmd/buf v1.75.0"
  "grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.4"
  "ghz github.com/bojand/ghz/cmd/ghz v0.121.0"
  "vegeta github.com/tsenart/vegeta/v12 v12.13.0"
  "staticcheck honnef.co/go/tools/cmd/staticcheck v0.8.2"
)

# tool_version BINARY prints the module version a Go binary was built from.
tool_version() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'; }

# install_tools NAME... installs the named tools into ./.bin unless the
# pinned version is there already.
install_tools() {
  local want name pkg version
  for want in "$@"; do
    for spec in "${tools[@]}"; do
      read -r name pkg version <<<"$spec"
      [ "$name" = "$want" ] || continue
      if [ "$(tool_version "$GOBIN/$name")" != "$version" ]; then
        echo "installing $pkg@$version into $GOBIN" >&2
        go install "$pkg@$version" || return 1
      fi
    done
  done
}

# redis-server, for the shared rate limit tests and the benchmark: Debian's
# package (root, apt-get), pinned by its upstream version.
REDIS_VERSION=7.0.15
install_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "installing Debian's redis-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends redis-server >/dev/null; } || return 1
  fi
  local got
  got=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
  if [ "$got" != "$REDIS_VERSION" ]; then
    echo "redis-server is $got; the tests are pinned to $REDIS_VERSION" >&2
    return 1
  fi
}
