# shellcheck shell=bash
# Shared by hack/build-*.sh: reading pinned versions, the cache key, and one Go build step.
# Source it; it defines functions and reads nothing until they are called.

# The required version of a module, whether go.mod lists it on a `require` line or in a block.
required() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2} $1 == "require" && $2 == m {print $3}' "$2"; }

# A short hash of the Go wrapper modules under $1: editing them changes the cache key.
tree_hash() {
  (cd "$1" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

# Where built binaries are cached: never in the repository.
cache_root() { echo "${HELMDECK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/helmdeck-operator}"; }

# build NAME DIR PACKAGE LDFLAGS: go build DIR's PACKAGE into $out/NAME, timed on stderr.
# $out is the cache directory the sourcing script computed.
# shellcheck disable=SC2154
build() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4" start
  start=$(date +%s)
  echo "building $name ..." >&2
  (cd "$dir" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
    go build -trimpath -ldflags "$ldflags" -o "$out/$name" "$pkg") >&2
  echo "built $name in $(( $(date +%s) - start ))s" >&2
}
