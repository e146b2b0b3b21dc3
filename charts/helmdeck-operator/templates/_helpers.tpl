{{/*
Names, labels and the pieces several templates share. The operator configuration itself is
rendered by "helmdeck-operator.config" below, from .Values.config, .Values.gateways and
.Values.families (docs/configuration.md describes the file it produces).
*/}}

{{/* Where the pod finds its files; the configuration names them. */}}
{{- define "helmdeck-operator.configDir" -}}/etc/helmdeck{{- end }}
{{- define "helmdeck-operator.gatewayDir" -}}/etc/helmdeck/gateways/{{ . }}{{- end }}
{{/* The port the operator serves /metrics on, with metrics.enabled. */}}
{{- define "helmdeck-operator.metricsPort" -}}9090{{- end }}
{{/* The four pack families; each has a default policy in files/policies/<family>.yaml. */}}
{{- define "helmdeck-operator.families" -}}browser python node vision{{- end }}

{{- define "helmdeck-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "helmdeck-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "helmdeck-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "helmdeck-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "helmdeck-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "helmdeck-operator.labels" -}}
helm.sh/chart: {{ include "helmdeck-operator.chart" . }}
{{ include "helmdeck-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: helmdeck
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "helmdeck-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "helmdeck-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "helmdeck-operator.leaseName" -}}
{{- default (include "helmdeck-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "helmdeck-operator.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The namespaces the operator watches: empty means the whole cluster. */}}
{{- define "helmdeck-operator.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaces" }}
{{- toJson (uniq .Values.watchNamespaces) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs on its own kinds, in each watched namespace (a Role) or in the
whole cluster (a ClusterRole). Each verb is used; docs/install.md says by what.
*/}}
{{- define "helmdeck-operator.rules" -}}
- apiGroups: [helmdeck.dev]
  resources: [helmdecksessions]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [helmdeck.dev]
  resources: [helmdecksessions/status]
  verbs: [patch]
- apiGroups: [helmdeck.dev]
  resources: [sessionpools]
  verbs: [get, list, watch, patch]
- apiGroups: [helmdeck.dev]
  resources: [sessionpools/status]
  verbs: [patch]
- apiGroups: [helmdeck.dev]
  resources: [sidecarpolicies]
  verbs: [list, watch, patch]
- apiGroups: [helmdeck.dev]
  resources: [sidecarpolicies/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
The fields of one group of values present in `in`, renamed to the configuration's snake_case:
(list in (list "camelKey:snake_key" ...)) -> a JSON object. A field left out (or set to null)
is left out of the file, so the operator's own default applies.
*/}}
{{- define "helmdeck-operator.fields" -}}
{{- $in := index . 0 | default dict }}
{{- $out := dict }}
{{- range $pair := index . 1 }}
{{- $names := splitList ":" $pair }}
{{- $value := index $in (first $names) }}
{{- if not (kindIs "invalid" $value) }}{{ $_ := set $out (last $names) $value }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Files mounted for one gateway (a projected volume of the Secrets it names), as a list of
{secret, key, path} dicts in JSON. The configuration points at the same paths.
*/}}
{{- define "helmdeck-operator.gatewayFiles" -}}
{{- $files := list }}
{{- $tls := .tls | default dict }}
{{- with $tls.caSecret }}
{{- $files = append $files (dict "secret" .name "key" (.key | default "ca.crt") "path" "ca.crt") }}
{{- end }}
{{- with $tls.clientCertSecret }}
{{- $files = append $files (dict "secret" .name "key" "tls.crt" "path" "tls.crt") }}
{{- $files = append $files (dict "secret" .name "key" "tls.key" "path" "tls.key") }}
{{- end }}
{{- $auth := .auth | default dict }}
{{- with $auth.tokenSecret }}
{{- $files = append $files (dict "secret" .name "key" (.key | default "token") "path" "token") }}
{{- end }}
{{- with $auth.clientSecret }}
{{- $files = append $files (dict "secret" .name "key" (.key | default "client-secret") "path" "client-secret") }}
{{- end }}
{{- with $auth.caSecret }}
{{- $files = append $files (dict "secret" .name "key" (.key | default "ca.crt") "path" "oidc-ca.crt") }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* One gateway entry of the configuration file (snake_case, as config.py reads it). */}}
{{- define "helmdeck-operator.gatewayConfig" -}}
{{- $dir := include "helmdeck-operator.gatewayDir" .name }}
{{- $out := dict "name" .name "endpoint" .endpoint }}
{{- with .workspace }}{{ $_ := set $out "workspace" . }}{{ end }}
{{- with .workspaces }}{{ $_ := set $out "workspaces" . }}{{ end }}
{{- with .workspacePrefix }}{{ $_ := set $out "workspace_prefix" . }}{{ end }}
{{- with .driver }}{{ $_ := set $out "driver" . }}{{ end }}
{{- if .plaintext }}
{{- $_ := set $out "plaintext" true }}
{{- else }}
{{- $tls := dict }}
{{- $in := .tls | default dict }}
{{- if $in.caSecret }}{{ $_ := set $tls "ca_file" (printf "%s/ca.crt" $dir) }}{{ end }}
{{- if $in.clientCertSecret }}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" $dir) }}
{{- end }}
{{- with $in.serverName }}{{ $_ := set $tls "server_name" . }}{{ end }}
{{- if $tls }}{{ $_ := set $out "tls" $tls }}{{ end }}
{{- end }}
{{- $auth := .auth | default dict }}
{{- $type := $auth.type | default "none" }}
{{- $a := dict "type" $type }}
{{- if eq $type "bearer" }}
{{- $_ := set $a "token_file" (printf "%s/token" $dir) }}
{{- else if eq $type "oidc" }}
{{- with $auth.issuer }}{{ $_ := set $a "issuer" . }}{{ end }}
{{- with $auth.tokenUrl }}{{ $_ := set $a "token_url" . }}{{ end }}
{{- $_ := set $a "client_id" $auth.clientId }}
{{- $_ := set $a "client_secret_file" (printf "%s/client-secret" $dir) }}
{{- with $auth.audience }}{{ $_ := set $a "audience" . }}{{ end }}
{{- with $auth.scopes }}{{ $_ := set $a "scopes" . }}{{ end }}
{{- if $auth.caSecret }}{{ $_ := set $a "ca_file" (printf "%s/oidc-ca.crt" $dir) }}{{ end }}
{{- end }}
{{- $_ := set $out "auth" $a }}
{{- if hasKey . "deadlineSeconds" }}{{ $_ := set $out "deadline_seconds" .deadlineSeconds }}{{ end }}
{{- with .retry }}
{{- $r := dict }}
{{- if hasKey . "maxAttempts" }}{{ $_ := set $r "max_attempts" .maxAttempts }}{{ end }}
{{- if hasKey . "initialBackoff" }}{{ $_ := set $r "initial_backoff" .initialBackoff }}{{ end }}
{{- if hasKey . "maxBackoff" }}{{ $_ := set $r "max_backoff" .maxBackoff }}{{ end }}
{{- if hasKey . "multiplier" }}{{ $_ := set $r "multiplier" .multiplier }}{{ end }}
{{- $_ := set $out "retry" $r }}
{{- end }}
{{- with .rateLimit }}
{{- $_ := set $out "rate_limit" (include "helmdeck-operator.fields" (list . (list "qps:qps" "burst:burst")) | fromJson) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The whole configuration file. */}}
{{- define "helmdeck-operator.config" -}}
{{- $c := .Values.config }}
{{- $gateways := list }}
{{- range .Values.gateways }}
{{- $gateways = append $gateways (include "helmdeck-operator.gatewayConfig" . | fromYaml) }}
{{- end }}
{{- $families := dict }}
{{- range $family := splitList " " (include "helmdeck-operator.families" .) }}
{{- $in := index $.Values.families $family }}
{{- $f := dict "image" $in.image "command" $in.command "policy_file" (printf "policies/%s.yaml" $family) }}
{{- with $in.resources }}{{ $_ := set $f "resources" . }}{{ end }}
{{- /* An empty list is kept (it exposes none); null leaves the operator's built-in ports. */}}
{{- if not (kindIs "invalid" $in.ports) }}{{ $_ := set $f "ports" $in.ports }}{{ end }}
{{- $_ := set $families $family $f }}
{{- end }}
{{- $out := dict
  "instance" $c.instance
  "release" (printf "%s/%s" .Release.Namespace .Release.Name)
  "namespaces" (include "helmdeck-operator.watchNamespaces" . | fromJsonArray)
  "default_gateway" $c.defaultGateway
  "on_sandbox_lost" $c.onSandboxLost
  "gateways" $gateways
  "families" $families
  "intervals" (include "helmdeck-operator.fields" (list $c.intervals (list
    "resyncSeconds:resync_seconds"
    "pendingSeconds:pending_seconds"
    "orphanSweepSeconds:orphan_sweep_seconds"
    "orphanGraceSeconds:orphan_grace_seconds"
    "outageGraceSeconds:outage_grace_seconds")) | fromJson)
  "concurrency" (include "helmdeck-operator.fields" (list $c.concurrency (list
    "workers:workers"
    "gatewayMutations:gateway_mutations"
    "gatewayWatches:gateway_watches")) | fromJson)
  "rate_limits" (include "helmdeck-operator.fields" (list $c.rateLimits (list
    "kubeQps:kube_qps"
    "kubeBurst:kube_burst"
    "eventsQps:events_qps"
    "eventsBurst:events_burst"
    "eventsBacklog:events_backlog"
    "recoveryWakesPerSecond:recovery_wakes_per_second")) | fromJson)
  "observability" (include "helmdeck-operator.fields" (list $c.observability (list
    "followDenials:follow_denials"
    "denialPollMinSeconds:denial_poll_min_seconds"
    "denialPollMaxSeconds:denial_poll_max_seconds"
    "denialPollsPerSecond:denial_polls_per_second"
    "denialWindowSeconds:denial_window_seconds")) | fromJson)
  "sessions" (include "helmdeck-operator.fields" (list $c.sessions (list
    "maxLifetimeSeconds:max_lifetime_seconds"
    "copyLabels:copy_labels")) | fromJson)
  "egress_guard" (include "helmdeck-operator.fields" (list $c.egressGuard (list
    "apiServer:api_server"
    "serviceCidrs:service_cidrs"
    "podCidrs:pod_cidrs"
    "hosts:hosts"
    "cidrs:cidrs")) | fromJson)
  "tenancy" (dict "fallback" .Values.tenancy.fallback)
}}
{{- toYaml $out }}
{{- end }}

{{/* What values.schema.json cannot say: rules across entries. Fails the render with a message. */}}
{{- define "helmdeck-operator.validate" -}}
{{- $names := list }}
{{- range .Values.gateways }}
{{- if has .name $names }}
{{- fail (printf "gateways: the name %q is used twice; gateway names must be unique" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- if not (has .Values.config.defaultGateway $names) }}
{{- fail (printf "config.defaultGateway: %q is not one of the gateways: %s" .Values.config.defaultGateway (join ", " $names)) }}
{{- end }}
{{- $observability := .Values.config.observability | default dict }}
{{- $min := $observability.denialPollMinSeconds }}
{{- $max := $observability.denialPollMaxSeconds }}
{{- if and (not (kindIs "invalid" $min)) (not (kindIs "invalid" $max)) (gt (float64 $min) (float64 $max)) }}
{{- fail (printf "config.observability: denialPollMinSeconds (%v) must not exceed denialPollMaxSeconds (%v)" $min $max) }}
{{- end }}
{{- range $family := splitList " " (include "helmdeck-operator.families" .) }}
{{- $portNames := list }}
{{- $portNumbers := list }}
{{- range (index $.Values.families $family).ports | default list }}
{{- if has .name $portNames }}
{{- fail (printf "families.%s.ports: the name %q is listed twice; each port name may be listed once" $family .name) }}
{{- end }}
{{- $number := toString .port }}
{{- if has $number $portNumbers }}
{{- fail (printf "families.%s.ports: the port %s is listed twice; each port number may be listed once" $family $number) }}
{{- end }}
{{- $portNames = append $portNames .name }}
{{- $portNumbers = append $portNumbers $number }}
{{- end }}
{{- end }}
{{- end }}
