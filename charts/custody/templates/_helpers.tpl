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
