#!/usr/bin/env bash
# Builds the delivery tools (helm for the chart tests, actionlint for the workflow check) from
# Go modules into a cache outside the repository, and prints the directory holding them.
#
# The versions are pinned by the wrapper modules under hack/tools/ (a `tool` directive and a
# go.sum each), so the build needs nothing but Go and the module proxy.
#
# Reuse: the cache key is the tool versions plus a hash of the wrapper modules, so a change to
# hack/tools rebuilds and an unchanged tree is a no-op.
#
# helm is built as upstream's Makefile builds it: its version (`helm version`) set by ldflags,
# and the Kubernetes version `helm template` and `helm lint` assume without a cluster set from
# the client-go it is built with (upstream's default in `go build` is v1.20, which would fail
# the chart's `kubeVersion: >=1.29`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/tools"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"
helm_version="$(required helm.sh/helm/v3 "$src/helm/go.mod")"
client_go_version="$(required k8s.io/client-go "$src/helm/go.mod")"
actionlint_version="$(required github.com/rhysd/actionlint "$src/actionlint/go.mod")"
[[ -n "$helm_version" && -n "$client_go_version" && -n "$actionlint_version" ]] \
  || { echo "cannot read versions from $src/*/go.mod" >&2; exit 1; }

tree_hash="$(tree_hash "$src")"
cache_root="$(cache_root)"
out="$cache_root/tools/helm-$helm_version-actionlint-$actionlint_version-$tree_hash"

if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"


# client-go v0.34.2 is Kubernetes 1.34.
k8s_minor="${client_go_version#v0.}"; k8s_minor="${k8s_minor%%.*}"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

build helm "$src/helm" helm.sh/helm/v3/cmd/helm "$helm_ldflags"
build actionlint "$src/actionlint" \
  github.com/rhysd/actionlint/cmd/actionlint \
  "-s -w -X github.com/rhysd/actionlint.version=$actionlint_version"
touch "$out/.complete"
echo "$out"
