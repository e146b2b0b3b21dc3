#!/usr/bin/env bash
# e2e/kind.sh: the e2e suite against a throwaway kind cluster, with the operator installed by
# the Helm chart from an image built here. For users and CI with Docker; see docs/e2e.md.
#
#   1. kind create cluster (its kubeconfig stays in a temp dir: yours is not touched)
#   2. docker build the image; kind load docker-image
#   3. a throwaway CA (openssl): a server certificate for the gateway Service and a client
#      certificate for the operator (mTLS; the operator refuses plaintext off loopback)
#   4. the OpenShell gateway: the emulator, from the same image (`helmdeck-operator
#      emulator`), as a Deployment + Service in namespace openshell, serving TLS. A real
#      OpenShell gateway can be used instead: set GATEWAY_ENDPOINT (and put its CA and
#      client certificate in the Secret below, see docs/e2e.md); the sandbox checks through
#      the emulator's admin API are then skipped.
#   5. helm install the chart pointing at it, the CA and client certificate from a Secret
#   6. pytest e2e/ (with a port-forward to the emulator's admin API), then helm uninstall
#      and the leftovers check (the suite's last test)
#   7. delete the cluster (KEEP_CLUSTER=1 keeps it)
#
# Needs: docker, kind, kubectl, helm, openssl, and a Python with pytest and PyYAML
# (PYTHON=.venv/bin/python after `make venv`). Exit status: pytest's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER="${KIND_CLUSTER_NAME:-helmdeck-e2e}"
IMAGE="${IMAGE:-helmdeck-operator:e2e}"
PYTHON="${PYTHON:-python3}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
ADMIN_LOCAL_PORT="${ADMIN_LOCAL_PORT:-17671}"
RELEASE=helmdeck-operator
NAMESPACE=helmdeck-system
GW_NAMESPACE=openshell
GW_NAME=openshell-emulator
GATEWAY_ENDPOINT="${GATEWAY_ENDPOINT:-}"
GATEWAY_SECRET=helmdeck-operator-gateway-pods

log() { printf '[kind-e2e] %s\n' "$*" >&2; }

for tool in docker kind kubectl helm openssl "$PYTHON"; do
  command -v "$tool" >/dev/null || { log "missing: $tool"; exit 2; }
done

work="$(mktemp -d)"
export KUBECONFIG="$work/kubeconfig"
forward_pid=""

cleanup() {
  local status=$?
  if [[ -n "$forward_pid" ]]; then
    kill "$forward_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then
    log "failed (exit $status); operator and gateway logs:"
    kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/instance="$RELEASE" --tail=100 \
      --all-containers --prefix 2>/dev/null || true
    kubectl -n "$GW_NAMESPACE" logs deploy/"$GW_NAME" --tail=50 2>/dev/null || true
  fi
  if [[ "$KEEP_CLUSTER" == 1 ]]; then
    log "kept cluster $CLUSTER; export KUBECONFIG=$KUBECONFIG"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER"
kind_args=(create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s)
if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
  kind_args+=(--image "$KIND_NODE_IMAGE")
fi
kind "${kind_args[@]}"

log "building $IMAGE"
docker build --tag "$IMAGE" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "generating a throwaway CA, gateway and operator certificates"
pki="$work/pki"
mkdir -p "$pki"
gw_host="$GW_NAME.$GW_NAMESPACE.svc"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=helmdeck-e2e-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
issue() { # name subject extensions
  openssl req -newkey rsa:2048 -nodes -subj "$2" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 1 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}
issue server "/CN=$gw_host" \
  "subjectAltName=DNS:$GW_NAME,DNS:$GW_NAME.$GW_NAMESPACE,DNS:$gw_host,DNS:$gw_host.cluster.local
extendedKeyUsage=serverAuth"
issue client "/CN=helmdeck-operator" "extendedKeyUsage=clientAuth"

kubectl create namespace "$GW_NAMESPACE"
kubectl create namespace "$NAMESPACE"
kubectl -n "$GW_NAMESPACE" create secret generic "$GW_NAME-tls" \
  --from-file=tls.crt="$pki/server.crt" --from-file=tls.key="$pki/server.key" \
  --from-file=ca.crt="$pki/ca.crt"
# The chart mounts this existing Secret: ca.crt (trust) + tls.crt/tls.key (client certificate).
kubectl -n "$NAMESPACE" create secret generic "$GATEWAY_SECRET" --type=kubernetes.io/tls \
  --from-file=tls.crt="$pki/client.crt" --from-file=tls.key="$pki/client.key" \
  --from-file=ca.crt="$pki/ca.crt"

admin_url=""
if [[ -z "$GATEWAY_ENDPOINT" ]]; then
  log "deploying the OpenShell emulator (TLS, client certificates required)"
  kubectl apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $GW_NAME
  namespace: $GW_NAMESPACE
  labels: {app: $GW_NAME}
spec:
  replicas: 1
  selector:
    matchLabels: {app: $GW_NAME}
  template:
    metadata:
      labels: {app: $GW_NAME}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: emulator
          image: $IMAGE
          imagePullPolicy: Never
          args: [emulator, --host, 0.0.0.0, --port, "17670", --admin-port, "17671",
                 --tls-cert, /tls/tls.crt, --tls-key, /tls/tls.key, --client-ca, /tls/ca.crt,
                 --workspace, default, --workspace, microvm, --provider, github]
          ports:
            - {name: grpc, containerPort: 17670}
            - {name: admin, containerPort: 17671}
          readinessProbe:
            httpGet: {path: /healthz, port: admin}
            periodSeconds: 2
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: tls, mountPath: /tls, readOnly: true}
      volumes:
        - name: tls
          secret: {secretName: $GW_NAME-tls}
---
apiVersion: v1
kind: Service
metadata:
  name: $GW_NAME
  namespace: $GW_NAMESPACE
spec:
  selector: {app: $GW_NAME}
  ports:
    - {name: grpc, port: 17670, targetPort: grpc}
    - {name: admin, port: 17671, targetPort: admin}
EOF
  kubectl -n "$GW_NAMESPACE" rollout status deploy/"$GW_NAME" --timeout=180s
  GATEWAY_ENDPOINT="$gw_host:17670"
  admin_url="http://127.0.0.1:$ADMIN_LOCAL_PORT"
fi

log "installing the chart ($RELEASE in $NAMESPACE) against $GATEWAY_ENDPOINT"
cat >"$work/values.yaml" <<EOF
image:
  repository: ${IMAGE%:*}
  tag: ${IMAGE##*:}
  pullPolicy: Never
gateways:
  - name: pods
    endpoint: $GATEWAY_ENDPOINT
    workspace: default
    driver: kubernetes
    tls:
      caSecret: {name: $GATEWAY_SECRET, key: ca.crt}
      clientCertSecret: {name: $GATEWAY_SECRET}
    auth: {type: mtls}
    egress:
      - namespaceSelector:
          matchLabels: {kubernetes.io/metadata.name: $GW_NAMESPACE}
config:
  intervals: {resyncSeconds: 10}
EOF
helm install "$RELEASE" charts/helmdeck-operator --namespace "$NAMESPACE" \
  --values "$work/values.yaml" --wait --timeout 5m
kubectl -n "$NAMESPACE" get pods -o wide

suite_args=(
  e2e
  --kubeconfig "$KUBECONFIG"
  --kubectl "$(command -v kubectl)"
  --helm "$(command -v helm)"
  --uninstall "$RELEASE"
  --release-namespace "$NAMESPACE"
  --delete-crds
  -p no:cacheprovider
)
if [[ -n "$admin_url" ]]; then
  kubectl -n "$GW_NAMESPACE" port-forward svc/"$GW_NAME" "$ADMIN_LOCAL_PORT:17671" \
    >"$work/port-forward.log" 2>&1 &
  forward_pid=$!
  for _ in $(seq 1 50); do
    if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "$admin_url/healthz" 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
  suite_args+=(--gateway-admin-url "$admin_url")
fi

log "running the e2e suite"
"$PYTHON" -m pytest "${suite_args[@]}" "$@"
