{{/* Names, labels and shared snippets. Every template takes its names from here. */}}

{{- define "glassbox.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix for the release's own objects (queue, secret, monitors); the SeldonDeployments keep their fixed names. */}}
{{- define "glassbox.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "glassbox.queue.fullname" -}}
{{- printf "%s-queue" (include "glassbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "glassbox.queue.secretName" -}}
{{- .Values.queue.secret.existingSecret | default (include "glassbox.queue.fullname" .) -}}
{{- end -}}

{{- define "glassbox.queue.claimName" -}}
{{- .Values.queue.persistence.existingClaim | default (printf "%s-data" (include "glassbox.queue.fullname" .)) -}}
{{- end -}}

{{/* Labels that select this release's pods; `component` is model, explainer or queue. */}}
{{- define "glassbox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "glassbox.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels (call with dict "root" $ "component" "..."). */}}
{{- define "glassbox.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "glassbox.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: glassbox
{{- end -}}

{{/* image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "glassbox.image" -}}
{{- $repository := required "an image repository is required (model.image.repository, explainer.image.repository, queue.image.repository)" .image.repository -}}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* In-cluster base URL of a SeldonDeployment predictor's service (the executor, port 8000). */}}
{{- define "glassbox.seldonServiceURL" -}}
{{- printf "http://%s-%s.%s.svc.cluster.local:8000" .name .predictor .root.Release.Namespace -}}
{{- end -}}

{{- define "glassbox.model.url" -}}
{{- include "glassbox.seldonServiceURL" (dict "root" . "name" .Values.model.name "predictor" .Values.model.predictor) -}}
{{- end -}}

{{- define "glassbox.explainer.url" -}}
{{- include "glassbox.seldonServiceURL" (dict "root" . "name" .Values.explainer.name "predictor" .Values.explainer.predictor) -}}
{{- end -}}

{{- define "glassbox.queue.url" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "glassbox.queue.fullname" .) .Release.Namespace .Values.queue.port -}}
{{- end -}}

{{/* The explainer runs as its own SeldonDeployment (mode component). */}}
{{- define "glassbox.explainer.component" -}}
{{- if and .Values.explainer.enabled (eq .Values.explainer.mode "component") }}true{{ end -}}
{{- end -}}

{{/* prometheus.io/* annotations for a Prometheus without the Operator (Seldon's metrics port is 6000). */}}
{{- define "glassbox.seldonScrapeAnnotations" -}}
{{- if .Values.monitoring.annotations }}
prometheus.io/scrape: "true"
prometheus.io/path: /prometheus
prometheus.io/port: "6000"
{{- end }}
{{- end -}}

{{/* Probes on the Seldon wrapper's /health/ping, on the port Seldon names `http`. Start-up (loading and
verifying artifacts, compiling the fast path) gets up to 5 minutes; after it, readiness fails within 4 s
of SIGTERM, when the component stops listening; liveness leaves a busy explainer alone. */}}
{{- define "glassbox.seldonProbes" -}}
startupProbe:
  httpGet: {path: /health/ping, port: http}
  periodSeconds: 2
  failureThreshold: 150
readinessProbe:
  httpGet: {path: /health/ping, port: http}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /health/ping, port: http}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* initContainer fetching artifacts through Seldon's rclone storage initializer (source: modelUri). */}}
{{- define "glassbox.storageInitializer" -}}
- name: artifacts-initializer
  image: {{ .root.Values.storageInitializer.image }}
  imagePullPolicy: {{ .root.Values.imagePullPolicy }}
  args: [{{ .artifacts.modelUri | quote }}, {{ .artifacts.path | quote }}]
  {{- with .root.Values.storageInitializer.secretName }}
  envFrom:
    - secretRef: {name: {{ . }}}
  {{- end }}
  securityContext: {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: artifacts, mountPath: {{ .artifacts.path }}}
{{- end -}}

{{/* The drift and outlier monitor (monitor.*): its name, in-cluster URL and the model's env entries. */}}
{{- define "glassbox.monitor.fullname" -}}
{{- printf "%s-monitor" (include "glassbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "glassbox.monitor.url" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "glassbox.monitor.fullname" .) .Release.Namespace .Values.monitor.port -}}
{{- end -}}

{{/* GLASSBOX_MODEL_MONITOR_* of the model container: where it forwards its sample of rows; nothing when the monitor is off. */}}
{{- define "glassbox.monitor.modelEnv" -}}
{{- if .Values.monitor.enabled -}}
- {name: GLASSBOX_MODEL_MONITOR_URL, value: {{ include "glassbox.monitor.url" . | quote }}}
- {name: GLASSBOX_MODEL_MONITOR_SAMPLE, value: {{ .Values.monitor.sample | quote }}}
{{- end }}
{{- end -}}
