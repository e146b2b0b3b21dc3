#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kubectl, etcd) from
# Go modules into a cache outside the repository, and prints the directory holding them.
#
# Reuse: the cache key is the Kubernetes and etcd versions plus a hash of the wrapper modules,
# so a change to hack/controlplane rebuilds and an unchanged tree is a no-op. When
# KUBEBUILDER_ASSETS names a directory with kube-apiserver and etcd (the envtest convention),
# nothing is built and that directory is printed instead.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/controlplane"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"
k8s_version="$(required k8s.io/kubernetes "$src/kubernetes/go.mod")"
etcd_version="$(required go.etcd.io/etcd/server/v3 "$src/etcd/go.mod")"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || { echo "cannot read versions from $src/*/go.mod" >&2; exit 1; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for bin in kube-apiserver etcd; do
    [[ -x "$KUBEBUILDER_ASSETS/$bin" ]] || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $bin" >&2; exit 1; }
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

tree_hash="$(tree_hash "$src")"
cache_root="$(cache_root)"
out="$cache_root/controlplane/k8s-$k8s_version-etcd-$etcd_version-$tree_hash"

if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean"
done


build etcd "$src/etcd" . "-s -w"
build kube-apiserver "$src/kubernetes" ./kube-apiserver "$k8s_ldflags"
build kube-controller-manager "$src/kubernetes" ./kube-controller-manager "$k8s_ldflags"
build kubectl "$src/kubernetes" ./kubectl "$k8s_ldflags"
touch "$out/.complete"
echo "$out"
