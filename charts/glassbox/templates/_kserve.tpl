{{/* protocol v2: the model and the explainer as one KServe InferenceService on Glassbox's ServingRuntime.
Its own file beside _helpers.tpl, as _redis.tpl and _shutdown.tpl: names, URLs and snippets of the V2 objects. */}}

{{/* "true" when the chart renders SeldonDeployments (protocol seldon), empty otherwise. */}}
{{- define "glassbox.seldon" -}}
{{- if eq .Values.protocol "seldon" }}true{{ end -}}
{{- end -}}

{{/* "true" when the chart renders the InferenceService and its ServingRuntime (protocol v2). */}}
{{- define "glassbox.v2" -}}
{{- if eq .Values.protocol "v2" }}true{{ end -}}
{{- end -}}

{{/* The ServingRuntime's name: one per release (it carries the release's image and artifacts path). */}}
{{- define "glassbox.v2.runtimeName" -}}
{{- printf "%s-v2" (include "glassbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* KServe names a component's Service <isvc>-<component>; both modes answer on port 80 in the namespace. */}}
{{- define "glassbox.v2.componentURL" -}}
{{- printf "http://%s-%s.%s.svc.cluster.local" .root.Values.model.name .component .root.Release.Namespace -}}
{{- end -}}

{{/* The predictor's V2 model URL (+ /infer: the explainer's --model-url, and where to predict). */}}
{{- define "glassbox.v2.modelURL" -}}
{{- printf "%s/v2/models/%s" (include "glassbox.v2.componentURL" (dict "root" . "component" "predictor")) .Values.model.name -}}
{{- end -}}

{{/* The explainer's V2 model URL (+ /infer to explain). */}}
{{- define "glassbox.v2.explainerURL" -}}
{{- printf "%s/v2/models/%s" (include "glassbox.v2.componentURL" (dict "root" . "component" "explainer")) .Values.explainer.name -}}
{{- end -}}

{{/* Where a component finds its artifacts: KServe's storage initializer always downloads to /mnt/models. */}}
{{- define "glassbox.v2.artifactsPath" -}}
{{- if eq .artifacts.source "modelUri" }}/mnt/models{{ else }}{{ .artifacts.path }}{{ end -}}
{{- end -}}

{{/* `glassbox serve-v2` arguments of a component (call with dict "root" $ "component" "model|explainer" "name" ...). */}}
{{- define "glassbox.v2.args" -}}
{{- $k := .root.Values.kserve -}}
- --component={{ .component }}
- --artifacts={{ .artifacts }}
- --name={{ .name }}
- --host=0.0.0.0
- --http-port={{ $k.httpPort }}
- --grpc-port={{ $k.grpcPort }}
- --metrics-port={{ $k.metricsPort }}
{{- end -}}

{{/* Pod annotations: KServe's deployment mode, and prometheus.io/* for a Prometheus without the Operator
(MLServer serves Glassbox's and its own metrics on metricsPort at /metrics). */}}
{{- define "glassbox.v2.podAnnotations" -}}
{{- if .Values.monitoring.annotations }}
prometheus.io/scrape: "true"
prometheus.io/path: /metrics
prometheus.io/port: {{ .Values.kserve.metricsPort | quote }}
{{- end }}
{{- end -}}

{{/* The REST port of MLServer, the one KServe routes to (Knative accepts a single container port). */}}
{{- define "glassbox.v2.ports" -}}
ports:
  - {name: http1, containerPort: {{ .Values.kserve.httpPort }}, protocol: TCP}
{{- end -}}

{{/* Probes on MLServer's V2 health endpoints. Start-up (loading and verifying artifacts, compiling the fast
path) gets up to 5 minutes; readiness fails within 4 s of SIGTERM; liveness leaves a busy explainer alone. */}}
{{- define "glassbox.v2.probes" -}}
{{- $port := .Values.kserve.httpPort -}}
startupProbe:
  httpGet: {path: /v2/health/live, port: {{ $port }}}
  periodSeconds: 2
  failureThreshold: 150
readinessProbe:
  httpGet: {path: /v2/health/ready, port: {{ $port }}}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /v2/health/live, port: {{ $port }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}
