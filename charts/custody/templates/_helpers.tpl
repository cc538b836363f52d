{{- define "custody.fullname" -}}
{{- if contains "custody" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-custody" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "custody.labels" -}}
app.kubernetes.io/name: custody
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "custody.selector" -}}
app.kubernetes.io/name: custody
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "custody.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "custody.webhookService" -}}
{{ include "custody.fullname" . }}-webhook
{{- end -}}

{{- define "custody.secretName" -}}
{{ .Values.certificates.secretName | default (printf "%s-webhook-tls" (include "custody.fullname" .)) }}
{{- end -}}

{{- define "custody.workloadsWebhook" -}}
{{ include "custody.fullname" . }}-workloads
{{- end -}}

{{- define "custody.policiesWebhook" -}}
{{ include "custody.fullname" . }}-policies
{{- end -}}

{{- define "custody.controllerServiceAccount" -}}
{{ include "custody.fullname" . }}-controller
{{- end -}}

{{/* The controller's leader Lease (its --lease-name), created by the chart. */}}
{{- define "custody.leaseName" -}}
{{ include "custody.fullname" . }}-controller
{{- end -}}

{{/* "true" when the webhook is served outside the cluster (webhook.external.url). */}}
{{- define "custody.externalWebhook" -}}
{{- if .Values.webhook.external.url -}}true{{- end -}}
{{- end -}}

{{/*
"true" when the controller issues the in-cluster webhook's serving certificate and keeps the
webhook configurations' caBundle: neither cert-manager nor an external webhook, whose caBundle
is webhook.external.caBundle and must not be overwritten.
*/}}
{{- define "custody.controllerManagesCertificates" -}}
{{- if not (or .Values.certificates.certManager.enabled (include "custody.externalWebhook" .)) -}}true{{- end -}}
{{- end -}}

{{/*
kube-controller-manager's identities that write the kinds Custody judges with a controller
ownerReference. Keep in sync with BUILTIN_CONTROLLERS in engine/src/controllers.rs.
*/}}
{{- define "custody.builtinControllerUsers" -}}
{{- $users := list -}}
{{- range list "deployment-controller" "replicaset-controller" "replication-controller" "statefulset-controller" "daemon-set-controller" "job-controller" "cronjob-controller" "generic-garbage-collector" -}}
{{- $users = append $users (printf "system:serviceaccount:kube-system:%s" .) -}}
{{- end -}}
{{- $users = append $users "system:kube-controller-manager" -}}
{{- toJson $users -}}
{{- end -}}

{{/* The user names of every controller identity: the built-in ones and webhook.controllerIdentities. */}}
{{- define "custody.controllerUsers" -}}
{{- $users := include "custody.builtinControllerUsers" . | fromJsonArray -}}
{{- $extra := .Values.webhook.controllerIdentities -}}
{{- range $extra.users -}}{{- $users = append $users . -}}{{- end -}}
{{- range $extra.serviceAccounts -}}
{{- $sa := splitList "/" . -}}
{{- $users = append $users (printf "system:serviceaccount:%s:%s" (index $sa 0) (index $sa 1)) -}}
{{- end -}}
{{- toJson (uniq $users) -}}
{{- end -}}

{{/*
The identities.controllers of the default policy: webhook.controllerIdentities, so the engine
trusts exactly whom the apiserver's matchConditions do not ask about, plus Custody's own
controller (which the apiserver never asks about), so that its writes to controller-owned
objects (the marks on ReplicaSets) are not judged on clusters without matchConditions either.
*/}}
{{- define "custody.policyControllers" -}}
{{- $ids := .Values.webhook.controllerIdentities -}}
{{- $sas := concat (list (printf "%s/%s" .Release.Namespace (include "custody.controllerServiceAccount" .))) ($ids.serviceAccounts | default list) -}}
{{- $set := dict "serviceAccounts" (uniq $sas) -}}
{{- with $ids.users }}{{ $_ := set $set "users" . }}{{ end -}}
{{- with $ids.groups }}{{ $_ := set $set "groups" . }}{{ end -}}
{{- toJson $set -}}
{{- end -}}

{{- define "custody.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "custody.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "custody.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.excludeNamespaces }}{{ $ns = append $ns . }}{{ end -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{/*
A webhook's clientConfig for a path: the in-cluster Service, or webhook.external.url with its
caBundle. Called with (list $ path).
*/}}
{{- define "custody.webhookClientConfig" -}}
{{- $ := index . 0 -}}
{{- $path := index . 1 -}}
{{- with $.Values.webhook.external -}}
{{- if .url -}}
url: {{ printf "%s%s" (trimSuffix "/" .url) $path | quote }}
{{- with .caBundle }}
caBundle: {{ . | quote }}
{{- end }}
{{- end -}}
{{- end -}}
{{- if not $.Values.webhook.external.url -}}
service:
  name: {{ include "custody.webhookService" $ }}
  namespace: {{ $.Release.Namespace }}
  path: {{ $path }}
  port: 443
{{- end -}}
{{- end -}}

{{/*
A Custody identity glob (`*` any run, `?` one character) as an anchored RE2 body. Called with
(list glob starRegex oneRegex): a service account's namespace or name must not cross the `:`.
*/}}
{{- define "custody.globRegex" -}}
{{- regexQuoteMeta (index . 0) | replace "\\*" (index . 1) | replace "\\?" (index . 2) -}}
{{- end -}}

{{/*
CEL that is true for a request from one of the default policy's agent identities (users,
groups and service accounts, as globs, the way the engine matches them). Empty when none is set.
*/}}
{{- define "custody.agentCondition" -}}
{{- $a := .Values.defaultPolicy.identities.agents | default dict -}}
{{- $terms := list -}}
{{- range $a.users -}}
{{- $terms = append $terms (printf "request.userInfo.username.matches(%s)" (printf "^%s$" (include "custody.globRegex" (list . ".*" ".")) | toJson)) -}}
{{- end -}}
{{- range $a.serviceAccounts -}}
{{- $p := splitList "/" . -}}
{{- $re := printf "^system:serviceaccount:%s:%s$" (include "custody.globRegex" (list (index $p 0) "[^:]*" "[^:]")) (include "custody.globRegex" (list (index $p 1) "[^:]*" "[^:]")) -}}
{{- $terms = append $terms (printf "request.userInfo.username.matches(%s)" ($re | toJson)) -}}
{{- end -}}
{{- range $a.groups -}}
{{- $terms = append $terms (printf "(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g.matches(%s)))" (printf "^%s$" (include "custody.globRegex" (list . ".*" ".")) | toJson)) -}}
{{- end -}}
{{- join " || " $terms -}}
{{- end -}}

{{/*
CEL terms that `subject` is one of the globs `patterns`, exactly as `custody vap` writes them
(cli/src/vap/cel.rs): exact names with `in`, globs with matches(). Called with
(list subject patterns); returns a JSON list of terms.
*/}}
{{- define "custody.celNameIn" -}}
{{- $subject := index . 0 -}}
{{- $exact := list -}}
{{- $terms := list -}}
{{- range index . 1 -}}
{{- if or (contains "*" .) (contains "?" .) -}}
{{- $re := regexQuoteMeta . | replace "\\*" ".*" | replace "\\?" "." -}}
{{- $terms = append $terms (printf "%s.matches(r'^%s$')" $subject $re) -}}
{{- else -}}
{{- $exact = append $exact (printf "'%s'" .) -}}
{{- end -}}
{{- end -}}
{{- if $exact -}}
{{- $terms = prepend $terms (printf "%s in [%s]" $subject (join ", " $exact)) -}}
{{- end -}}
{{- toJson $terms -}}
{{- end -}}
