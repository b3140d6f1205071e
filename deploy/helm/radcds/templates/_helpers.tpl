{{/*
Named templates shared by every radcds manifest.

Templates that render one component take a context dict:
  root  the chart's top-level context ($)
  name  the component name: referral, imaging, inference, reporting, fusion, worklist (or triton, topics)
  svc   the component's values (.Values.<name>)
The templates build it with: dict "root" $ "name" $name "svc" (index $.Values $name).
*/}}

{{/* The radcds services, in a fixed order. */}}
{{- define "radcds.componentNames" -}}
{{- list "referral" "imaging" "inference" "reporting" "fusion" "worklist" | toJson -}}
{{- end }}

{{/* The enabled radcds services as a JSON list (use with fromJsonArray). */}}
{{- define "radcds.enabledComponents" -}}
{{- $enabled := list -}}
{{- range $name := include "radcds.componentNames" . | fromJsonArray -}}
{{- if (index $.Values $name).enabled -}}
{{- $enabled = append $enabled $name -}}
{{- end -}}
{{- end -}}
{{- $enabled | toJson -}}
{{- end }}

{{- define "radcds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-wide name prefix, at most 52 characters so "-<component>" still fits 63. */}}
{{- define "radcds.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's resources: <fullname>-<component>. Takes the context dict. */}}
{{- define "radcds.componentFullname" -}}
{{- printf "%s-%s" (include "radcds.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "radcds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component. Takes the context dict. */}}
{{- define "radcds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "radcds.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Common labels of one component. Takes the context dict. */}}
{{- define "radcds.labels" -}}
helm.sh/chart: {{ include "radcds.chart" .root }}
{{ include "radcds.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: radcds
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* Tag of the radcds images: image.tag, else the chart's appVersion. Takes the root context. */}}
{{- define "radcds.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end }}

{{/* <image.repository>/radcds-<name>:<tag> of one component. Takes the context dict. */}}
{{- define "radcds.image" -}}
{{- $svcImage := .svc.image | default dict -}}
{{- $tag := $svcImage.tag | default (include "radcds.imageTag" .root) -}}
{{- printf "%s/radcds-%s:%s" (trimSuffix "/" .root.Values.image.repository) .name $tag -}}
{{- end }}

{{/* RADCDS_<NAME>: the settings prefix of one component. Takes the context dict. */}}
{{- define "radcds.envPrefix" -}}
{{- printf "RADCDS_%s" (.name | upper | replace "-" "_") -}}
{{- end }}

{{/* host:port of Triton's gRPC endpoint, or a clear failure. Takes the root context. */}}
{{- define "radcds.tritonUrl" -}}
{{- if .Values.triton.enabled -}}
{{- printf "%s:%v" (include "radcds.componentFullname" (dict "root" . "name" "triton")) .Values.triton.ports.grpc -}}
{{- else -}}
{{- required "triton.externalUrl is required when triton.enabled=false: set it to the host:port of an external Triton gRPC endpoint (e.g. --set triton.externalUrl=triton.models.svc:8001), or set triton.enabled=true" .Values.triton.externalUrl -}}
{{- end -}}
{{- end }}

{{/* Name of the Secret holding the database URL, or "" when none is configured. */}}
{{- define "radcds.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if (include "radcds.databaseUrlsGiven" .) -}}
{{- printf "%s-database" (include "radcds.fullname" .) -}}
{{- end -}}
{{- end }}

{{/* "true" when database.urls names at least one service's URL (the chart then creates the Secret). */}}
{{- define "radcds.databaseUrlsGiven" -}}
{{- range $name, $url := .Values.database.urls -}}
{{- if $url -}}true{{- end -}}
{{- end -}}
{{- end }}

{{/* "true" when the component gets RADCDS_<SVC>_DATABASE_URL from the database Secret. Takes the context dict. */}}
{{- define "radcds.usesDatabaseUrl" -}}
{{- $root := .root -}}
{{- if and .svc.useDatabase (include "radcds.databaseSecretName" $root) (or $root.Values.database.existingSecret (index $root.Values.database.urls .name)) -}}true{{- end -}}
{{- end }}

{{/* The services that own a database (an Alembic chain of their own, `radcds-<svc> migrate`), in a fixed order. */}}
{{- define "radcds.databaseComponents" -}}
{{- list "referral" "imaging" "reporting" "fusion" "worklist" | toJson -}}
{{- end }}

{{/*
"true" when a migration hook Job runs the component's migrations before install and upgrade: migrations.enabled,
the component enabled, and its RADCDS_<SVC>_DATABASE_URL set from the database Secret. With the SQLite fallback
(no URL) the service migrates on start, as before. Takes the context dict.
*/}}
{{- define "radcds.migrationJob" -}}
{{- if and .root.Values.migrations.enabled .svc.enabled (has .name (include "radcds.databaseComponents" .root | fromJsonArray)) (include "radcds.usesDatabaseUrl" .) -}}true{{- end -}}
{{- end }}

{{/*
The Kafka topics each consumer service subscribes to, as JSON (name -> list), as the services' CONSUMED_TOPICS
say (services/<svc>/src/radcds_<svc>/app.py; tests/helm checks the two agree). fusion also reads imaging's InstanceStored
events when it reads imaging's DICOMweb (the chart's imaging enabled, or fusion.settings.IMAGING_DICOMWEB_URL).
Takes the root context.
*/}}
{{- define "radcds.consumedTopics" -}}
{{- $fusion := list "radcds.inference.findings.v1" "radcds.reporting.findings.v1" "radcds.imaging.studies.v1" "radcds.reporting.orders.v1" "radcds.referral.evaluations.v1" -}}
{{- if or .Values.imaging.enabled (hasKey (.Values.fusion.settings | default dict) "IMAGING_DICOMWEB_URL") -}}
{{- $fusion = append $fusion "radcds.imaging.instances.v1" -}}
{{- end -}}
{{- dict
  "inference" (list "radcds.imaging.studies.v1")
  "reporting" (list "radcds.imaging.studies.v1" "radcds.inference.findings.v1" "radcds.fusion.assessments.v1")
  "fusion" $fusion
  "worklist" (list "radcds.imaging.studies.v1" "radcds.inference.findings.v1" "radcds.fusion.assessments.v1" "radcds.reporting.reports.v1" "radcds.reporting.orders.v1")
  | toJson -}}
{{- end }}

{{/* The Kafka consumer group of a consumer service: settings.CONSUMER_GROUP, else the service's default radcds-<name>. */}}
{{- define "radcds.consumerGroup" -}}
{{- (.svc.settings | default dict).CONSUMER_GROUP | default (printf "radcds-%s" .name) -}}
{{- end }}

{{/* "true" when a KEDA ScaledObject scales the component (keda.enabled, a Kafka consumer, or triton). Takes the context dict. */}}
{{- define "radcds.kedaScaled" -}}
{{- $keda := .root.Values.keda -}}
{{- if $keda.enabled -}}
{{- if eq .name "triton" -}}
{{- if and .root.Values.triton.enabled $keda.triton.enabled -}}true{{- end -}}
{{- else if and .svc.enabled (hasKey (include "radcds.consumedTopics" .root | fromJson) .name) (index $keda.consumers .name).enabled -}}true{{- end -}}
{{- end -}}
{{- end }}

{{/* The metrics job of a component as Prometheus sees it through the chart's ServiceMonitor: the Service name. */}}
{{- define "radcds.metricsJob" -}}
{{- include "radcds.componentFullname" . -}}
{{- end }}

{{/* env entries (name/value) from a map of env name -> string, in key order; `omit` lists names left out. */}}
{{- define "radcds.envList" -}}
{{- $omit := .omit | default list -}}
{{- range $name, $value := .env }}
{{- if not (has $name $omit) }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* http://<fullname>-<name>:<http port><path>: a URL on the chart's own Service of a component. */}}
{{- define "radcds.serviceUrl" -}}
{{- printf "http://%s:%v%s" (include "radcds.componentFullname" (dict "root" .root "name" .name)) (index .root.Values .name).ports.http .path -}}
{{- end }}

{{/* Checks on values that the schema cannot express. Takes the root context. */}}
{{- define "radcds.validateValues" -}}
{{- if not (trim .Values.kafka.bootstrapServers) -}}
{{- fail "kafka.bootstrapServers is required: set it to the comma-separated host:port list of the external Kafka brokers (e.g. --set kafka.bootstrapServers=kafka-0.kafka:9092)" -}}
{{- end -}}
{{- if and .Values.inference.enabled (not .Values.triton.enabled) (not .Values.triton.externalUrl) -}}
{{- fail "triton.externalUrl is required when triton.enabled=false: set it to the host:port of an external Triton gRPC endpoint (e.g. --set triton.externalUrl=triton.models.svc:8001), or set triton.enabled=true" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.existingSecret) -}}
{{- fail "kafka.sasl.existingSecret is required when kafka.sasl.mechanism is set: name a Secret holding the SASL username and password" -}}
{{- end -}}
{{- if and .Values.triton.enabled (eq .Values.triton.modelRepository.source "pvc") (not .Values.triton.modelRepository.existingClaim) -}}
{{- fail "triton.modelRepository.existingClaim is required when triton.modelRepository.source=pvc" -}}
{{- end -}}
{{- if .Values.worklist.enabled -}}
{{- range $peer, $setting := dict "reporting" "REPORTING_FHIR_URL" "imaging" "IMAGING_DICOMWEB_URL" -}}
{{- if not (or (index $.Values $peer).enabled (hasKey ($.Values.worklist.settings | default dict) $setting)) -}}
{{- fail (printf "worklist.settings.%s is required when %s.enabled=false: the worklist calls %s; set it to the external URL, or set %s.enabled=true" $setting $peer $peer $peer) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name := include "radcds.componentNames" . | fromJsonArray -}}
{{- $svc := index $.Values $name -}}
{{- if and (include "radcds.kedaScaled" (dict "root" $ "name" $name "svc" $svc)) ($svc.autoscaling | default dict).enabled -}}
{{- fail (printf "%s.autoscaling.enabled and keda.enabled both scale the %s Deployment (an HPA and a KEDA ScaledObject must not target the same Deployment): set %s.autoscaling.enabled=false, or keda.consumers.%s.enabled=false" $name $name $name $name) -}}
{{- end -}}
{{- end -}}
{{- if and (include "radcds.kedaScaled" (dict "root" . "name" "triton" "svc" .Values.triton)) (not .Values.keda.triton.serverAddress) -}}
{{- fail "keda.triton.serverAddress is required when keda.enabled and keda.triton.enabled: the Prometheus URL KEDA queries for Triton's queue time (e.g. http://prometheus-operated.monitoring:9090), or set keda.triton.enabled=false" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) -}}
{{- fail "ingress.hosts is required when ingress.enabled: list the hosts and their routes (cdsHooks, fhir, dicomweb, worklist)" -}}
{{- end -}}
{{- if and .Values.worklist.enabled (eq .Values.environment "production") (not .Values.worklist.auth.existingSecret) -}}
{{- fail "worklist.auth.existingSecret is required when environment=production: name a Secret holding the worklist's session secret (key worklist.auth.sessionSecretKey) and its OIDC client secret (key worklist.auth.clientSecretKey)" -}}
{{- end -}}
{{- end }}

{{/*
The ConfigMap data of one component, as YAML (env name -> string). Takes the context dict.
*/}}
{{- define "radcds.componentConfig" -}}
{{- $root := .root -}}
{{- $p := include "radcds.envPrefix" . -}}
{{- $cfg := dict -}}
{{- $_ := set $cfg (printf "%s_ENVIRONMENT" $p) $root.Values.environment -}}
{{- $_ = set $cfg (printf "%s_LOG_LEVEL" $p) $root.Values.logLevel -}}
{{- $_ = set $cfg (printf "%s_HTTP_HOST" $p) "0.0.0.0" -}}
{{- range $portName, $port := .svc.ports -}}
{{- $_ = set $cfg (printf "%s_%s_PORT" $p ($portName | upper)) (toString $port) -}}
{{- end -}}
{{- $_ = set $cfg (printf "%s_KAFKA_BOOTSTRAP_SERVERS" $p) (trim $root.Values.kafka.bootstrapServers) -}}
{{- $_ = set $cfg (printf "%s_KAFKA_SECURITY_PROTOCOL" $p) $root.Values.kafka.securityProtocol -}}
{{- $_ = set $cfg (printf "%s_KAFKA_REQUEST_TIMEOUT_MS" $p) (toString $root.Values.kafka.requestTimeoutMs) -}}
{{- with $root.Values.kafka.sasl.mechanism -}}
{{- $_ = set $cfg (printf "%s_KAFKA_SASL_MECHANISM" $p) . -}}
{{- end -}}
{{- if $root.Values.kafka.tls.caSecret -}}
{{- $_ = set $cfg (printf "%s_KAFKA_SSL_CAFILE" $p) (printf "/etc/radcds/kafka/%s" $root.Values.kafka.tls.caKey) -}}
{{- end -}}
{{- with $root.Values.otel.endpoint -}}
{{- $_ = set $cfg (printf "%s_OTLP_ENDPOINT" $p) . -}}
{{- end -}}
{{- $httpUrl := printf "http://%s:%v" (include "radcds.componentFullname" .) .svc.ports.http -}}
{{- if eq .name "imaging" -}}
{{- /* Instances under <mountPath>/instances; the SQLite fallback (no database configured) is
     <STORAGE_DIR>/../imaging.db, i.e. <mountPath>/imaging.db on the same writable volume. */ -}}
{{- $_ = set $cfg (printf "%s_STORAGE_DIR" $p) (printf "%s/instances" (trimSuffix "/" .svc.persistence.mountPath)) -}}
{{- $_ = set $cfg (printf "%s_PUBLIC_BASE_URL" $p) (.svc.publicBaseUrl | default $httpUrl | trimSuffix "/") -}}
{{- else if eq .name "inference" -}}
{{- $_ = set $cfg (printf "%s_TRITON_URL" $p) (include "radcds.tritonUrl" $root) -}}
{{- /* DICOMweb of the chart's imaging Service: WADO-RS/QIDO-RS for analyses, STOW-RS for the SR. */ -}}
{{- $_ = set $cfg (printf "%s_IMAGING_DICOMWEB_URL" $p) (include "radcds.serviceUrl" (dict "root" $root "name" "imaging" "path" "/dicom-web")) -}}
{{- else if eq .name "fusion" -}}
{{- /* The SQLite fallback (no database configured) is <DATA_DIR>/fusion.db; measurement SRs are read
     over WADO-RS from the chart's imaging Service. */ -}}
{{- $_ = set $cfg (printf "%s_DATA_DIR" $p) (trimSuffix "/" .svc.persistence.mountPath) -}}
{{- if $root.Values.imaging.enabled -}}
{{- $_ = set $cfg (printf "%s_IMAGING_DICOMWEB_URL" $p) (include "radcds.serviceUrl" (dict "root" $root "name" "imaging" "path" "/dicom-web")) -}}
{{- end -}}
{{- else if eq .name "worklist" -}}
{{- /* The SQLite fallback (no database configured) is <DATA_DIR>/worklist.db. Drafts are read and signed on
     the chart's reporting Service, key images and instance metadata read from its imaging Service. Sign-in is
     always OpenID Connect: production refuses the development sign-in form. */ -}}
{{- $_ = set $cfg (printf "%s_DATA_DIR" $p) (trimSuffix "/" .svc.persistence.mountPath) -}}
{{- if $root.Values.reporting.enabled -}}
{{- $_ = set $cfg (printf "%s_REPORTING_FHIR_URL" $p) (include "radcds.serviceUrl" (dict "root" $root "name" "reporting" "path" "/fhir")) -}}
{{- end -}}
{{- if $root.Values.imaging.enabled -}}
{{- $_ = set $cfg (printf "%s_IMAGING_DICOMWEB_URL" $p) (include "radcds.serviceUrl" (dict "root" $root "name" "imaging" "path" "/dicom-web")) -}}
{{- end -}}
{{- $_ = set $cfg (printf "%s_MODEL_MANIFEST" $p) .svc.modelManifest -}}
{{- with .svc.publicBaseUrl -}}
{{- $_ = set $cfg (printf "%s_PUBLIC_BASE_URL" $p) (trimSuffix "/" .) -}}
{{- $_ = set $cfg (printf "%s_SECURE_COOKIES" $p) (toString (hasPrefix "https://" .)) -}}
{{- end -}}
{{- $_ = set $cfg (printf "%s_AUTH_MODE" $p) "oidc" -}}
{{- $_ = set $cfg (printf "%s_OIDC_ISSUER" $p) .svc.auth.oidcIssuer -}}
{{- $_ = set $cfg (printf "%s_OIDC_CLIENT_ID" $p) .svc.auth.clientId -}}
{{- $_ = set $cfg (printf "%s_OIDC_SCOPES" $p) .svc.auth.scopes -}}
{{- $_ = set $cfg (printf "%s_OIDC_ROLES_CLAIM" $p) .svc.auth.rolesClaim -}}
{{- else if eq .name "referral" -}}
{{- /* The SQLite fallback (no database configured) is <DATA_DIR>/referral.db on the pod's /tmp emptyDir (the root
     filesystem is read-only): consultations and the outbox last as long as the pod. Production: database.urls.referral
     (or database.existingSecret) with referral.useDatabase=true. */ -}}
{{- if not (include "radcds.usesDatabaseUrl" .) -}}
{{- $_ = set $cfg (printf "%s_DATA_DIR" $p) "/tmp/referral" -}}
{{- end -}}
{{- /* patient-view also reads radcds's own follow-up recommendations from the chart's fusion Service. */ -}}
{{- if $root.Values.fusion.enabled -}}
{{- $_ = set $cfg (printf "%s_FUSION_FHIR_URL" $p) (include "radcds.serviceUrl" (dict "root" $root "name" "fusion" "path" "/fhir")) -}}
{{- end -}}
{{- else if eq .name "reporting" -}}
{{- /* The SQLite fallback (no database configured) is <DATA_DIR>/reporting.db. */ -}}
{{- $_ = set $cfg (printf "%s_DATA_DIR" $p) (trimSuffix "/" .svc.persistence.mountPath) -}}
{{- $_ = set $cfg (printf "%s_FHIR_BASE_URL" $p) (.svc.fhirBaseUrl | default (printf "%s/fhir" $httpUrl) | trimSuffix "/") -}}
{{- with .svc.mllp -}}
{{- if .destinations -}}
{{- $_ = set $cfg (printf "%s_MLLP_DESTINATIONS" $p) (join "," .destinations) -}}
{{- end -}}
{{- if .options -}}
{{- $_ = set $cfg (printf "%s_MLLP_OPTIONS_FILE" $p) "/etc/radcds/hl7/destinations.json" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if include "radcds.migrationJob" . -}}
{{- /* The pre-install/pre-upgrade hook Job has migrated the database: the service does not on start. */ -}}
{{- $_ = set $cfg (printf "%s_MIGRATE_ON_START" $p) "false" -}}
{{- end -}}
{{- range $key, $value := .svc.settings -}}
{{- $_ = set $cfg (printf "%s_%s" $p $key) (toString $value) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end }}

{{/* Container env entries of one component (secrets and extras), as a YAML list or "". */}}
{{- define "radcds.componentEnv" -}}
{{- $root := .root -}}
{{- $p := include "radcds.envPrefix" . -}}
{{- if include "radcds.usesDatabaseUrl" . }}
- name: {{ $p }}_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "radcds.databaseSecretName" $root }}
      key: {{ ternary (index $root.Values.database.existingSecretKeys .name) (printf "%s-url" .name) (not (empty $root.Values.database.existingSecret)) }}
{{- end }}
{{- with $root.Values.kafka.sasl }}
{{- if .mechanism }}
- name: {{ $p }}_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: {{ $p }}_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- if and .svc.auth .svc.auth.existingSecret }}
{{- with .svc.auth }}
- name: {{ $p }}_SESSION_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .sessionSecretKey }}
{{- if .clientSecretKey }}
- name: {{ $p }}_OIDC_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .clientSecretKey }}
{{- end }}
{{- end }}
{{- end }}
{{- with .svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* One probe: httpGet <path> on the named port, merged with its timings. */}}
{{- define "radcds.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{- with .timings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Probe timings of one component: the top-level probes overridden by the service's own. */}}
{{- define "radcds.componentProbes" -}}
{{- $probes := deepCopy .root.Values.probes -}}
{{- $probes = mergeOverwrite $probes (deepCopy (.svc.probes | default dict)) -}}
{{- toYaml $probes -}}
{{- end }}

{{/* True ("true") when the component keeps data on a created or existing claim. */}}
{{- define "radcds.usesClaim" -}}
{{- if and .svc.persistence .svc.persistence.enabled -}}true{{- end -}}
{{- end }}

{{/*
The Deployment of one radcds service, rendered from the context dict. Every service gets the
same shape: command radcds-<name>, env from its ConfigMap, the ports in .svc.ports, /healthz and
/readyz probes on the http port, a read-only root filesystem with an emptyDir /tmp.
*/}}
{{- define "radcds.deployment" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $fullname := include "radcds.componentFullname" . -}}
{{- $probes := include "radcds.componentProbes" . | fromYaml -}}
{{- $env := include "radcds.componentEnv" . | trim -}}
{{- $autoscaling := $svc.autoscaling | default dict -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "radcds.labels" . | nindent 4 }}
spec:
  {{- if not (or $autoscaling.enabled (include "radcds.kedaScaled" .)) }}
  replicas: {{ $svc.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if include "radcds.usesClaim" . }}
  # One pod at a time owns a ReadWriteOnce claim: stop the old pod before starting the new one.
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "radcds.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "radcds.labels" . | nindent 8 }}
        {{- with $svc.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "radcds.componentConfig" . | sha256sum }}
        {{- if $root.Values.metrics.annotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $svc.ports.http | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds | default 30 }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: {{ include "radcds.image" . | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["radcds-{{ .name }}"]
          ports:
            {{- range $portName, $port := $svc.ports }}
            - name: {{ $portName }}
              containerPort: {{ $port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}
            {{- range $svc.envFromSecrets }}
            - secretRef:
                name: {{ . }}
            {{- end }}
          {{- if $env }}
          env:
            {{- $env | nindent 12 }}
          {{- end }}
          startupProbe:
            {{- include "radcds.httpProbe" (dict "path" "/healthz" "port" "http" "timings" $probes.startup) | nindent 12 }}
          livenessProbe:
            {{- include "radcds.httpProbe" (dict "path" "/healthz" "port" "http" "timings" $probes.liveness) | nindent 12 }}
          readinessProbe:
            {{- include "radcds.httpProbe" (dict "path" "/readyz" "port" "http" "timings" $probes.readiness) | nindent 12 }}
          {{- with $svc.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $svc.persistence }}
            - name: data
              mountPath: {{ $svc.persistence.mountPath }}
            {{- end }}
            {{- if $root.Values.kafka.tls.caSecret }}
            - name: kafka-ca
              mountPath: /etc/radcds/kafka
              readOnly: true
            {{- end }}
            {{- if and $svc.mllp $svc.mllp.options }}
            - name: hl7-destinations
              mountPath: /etc/radcds/hl7
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.tmpSizeLimit }}
        {{- if $svc.persistence }}
        - name: data
          {{- if $svc.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ $svc.persistence.existingClaim | default $fullname }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
        {{- if and $svc.mllp $svc.mllp.options }}
        - name: hl7-destinations
          configMap:
            name: {{ $fullname }}-hl7
        {{- end }}
        {{- if $root.Values.kafka.tls.caSecret }}
        - name: kafka-ca
          secret:
            secretName: {{ $root.Values.kafka.tls.caSecret }}
            items:
              - key: {{ $root.Values.kafka.tls.caKey }}
                path: {{ $root.Values.kafka.tls.caKey }}
        {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* The Service of one component: one TCP port per entry of .svc.ports. */}}
{{- define "radcds.service" -}}
{{- $service := .svc.service | default dict -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "radcds.componentFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "radcds.labels" . | nindent 4 }}
  {{- with $service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $service.type | default "ClusterIP" }}
  selector:
    {{- include "radcds.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $portName, $port := .svc.ports }}
    - name: {{ $portName }}
      port: {{ $port }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if eq $portName "grpc" }}
      appProtocol: kubernetes.io/h2c
      {{- else if or (eq $portName "http") (eq $portName "metrics") }}
      appProtocol: http
      {{- end }}
    {{- end }}
{{- end }}

{{/* "<port>" of a URL: its explicit port, else 443 for https and 80 for http. */}}
{{- define "radcds.urlPort" -}}
{{- $url := urlParse . -}}
{{- $port := trimPrefix (printf "%s:" $url.hostname) $url.host -}}
{{- if eq $port $url.host -}}{{- ternary "443" "80" (eq $url.scheme "https") -}}{{- else -}}{{- $port -}}{{- end -}}
{{- end }}

{{/* One egress rule as YAML: ports (a list of numbers) to the peers in `to` (empty: any address). */}}
{{- define "radcds.egressRule" -}}
- {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .ports | uniq }}
    - port: {{ int . }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/*
The worklist's egress rules, as a YAML list: DNS, the chart's reporting and imaging pods (their http ports), the
ports of the Kafka brokers (kafka.bootstrapServers), of the database (when one is configured), of the OIDC
issuer and of the OTLP endpoint. Kafka, the database and the issuer are usually outside the release and a
NetworkPolicy cannot name a host: their rules admit any address on those ports unless
worklist.networkPolicy.egress.kafkaTo / databaseTo / oidcTo name the peers. Takes the context dict.
*/}}
{{- define "radcds.worklistEgress" -}}
{{- $root := .root -}}
{{- $egress := .svc.networkPolicy.egress -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- range $peer := list "reporting" "imaging" }}
{{- if (index $root.Values $peer).enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "radcds.selectorLabels" (dict "root" $root "name" $peer) | nindent 10 }}
  ports:
    - port: {{ (index $root.Values $peer).ports.http }}
      protocol: TCP
{{- end }}
{{- end }}
{{- $kafkaPorts := list -}}
{{- range $server := splitList "," (trim $root.Values.kafka.bootstrapServers) -}}
{{- $kafkaPorts = append $kafkaPorts (last (splitList ":" (trim $server))) -}}
{{- end }}
{{ include "radcds.egressRule" (dict "to" $egress.kafkaTo "ports" $kafkaPorts) }}
{{- if include "radcds.usesDatabaseUrl" . }}
{{ include "radcds.egressRule" (dict "to" $egress.databaseTo "ports" (list $egress.databasePort)) }}
{{- end }}
{{ include "radcds.egressRule" (dict "to" $egress.oidcTo "ports" (list (include "radcds.urlPort" .svc.auth.oidcIssuer))) }}
{{- with $root.Values.otel.endpoint }}
{{ include "radcds.egressRule" (dict "to" list "ports" (list (include "radcds.urlPort" .))) }}
{{- end }}
{{- with $egress.extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An egress rule to the pods of a component of this release on its http port (or `port`). */}}
{{- define "radcds.egressToComponent" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "radcds.selectorLabels" (dict "root" .root "name" .name) | nindent 10 }}
  ports:
    - port: {{ .port | default (index .root.Values .name).ports.http }}
      protocol: TCP
{{- end }}

{{/*
The egress rules of every component but the worklist (which has its own, radcds.worklistEgress), as a YAML list,
when networkPolicy.egress.enabled. The flows follow what each service calls (services/<svc>/src/radcds_<svc>/settings.py):
  every component  DNS (networkPolicy.egress.dnsTo, UDP and TCP 53)
  radcds services  Kafka (the ports of kafka.bootstrapServers), the database (when RADCDS_<SVC>_DATABASE_URL is
                   set), the OTLP collector (otel.endpoint)
  inference        Triton's gRPC port (the chart's Triton pods, or triton.externalUrl's port), imaging's DICOMweb
  fusion           imaging's DICOMweb, the EHR (the ports of settings.EHR_FHIR_BASE_URL and EHR_TOKEN_URL)
  referral         fusion's FHIR API, the EHR (networkPolicy.egress.ehr.ports: the hooks' fhirServer, the
                   trusted issuers' JWKS)
  reporting        the MLLP destinations' ports (reporting.mllp.destinations), the SMART JWKS (settings.SMART_JWKS_URL)
  imaging          the S3 endpoint (settings.STORAGE_BACKEND=s3: S3_ENDPOINT_URL's port, else 443)
  triton           DNS only
plus networkPolicy.egress.extra.<component>. Peers outside the release are the `*To` lists (empty: any address
on that port; a NetworkPolicy cannot name a host). Takes the context dict.
*/}}
{{- define "radcds.componentEgress" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $e := $v.networkPolicy.egress -}}
{{- $settings := .svc.settings | default dict -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with $e.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- if ne .name "triton" }}
{{- $kafkaPorts := list -}}
{{- range $server := splitList "," (trim $v.kafka.bootstrapServers) -}}
{{- $kafkaPorts = append $kafkaPorts (last (splitList ":" (trim $server))) -}}
{{- end }}
{{ include "radcds.egressRule" (dict "to" $e.kafkaTo "ports" $kafkaPorts) }}
{{- if include "radcds.usesDatabaseUrl" . }}
{{ include "radcds.egressRule" (dict "to" $e.databaseTo "ports" (list $e.databasePort)) }}
{{- end }}
{{- with $v.otel.endpoint }}
{{ include "radcds.egressRule" (dict "to" $e.otelTo "ports" (list (include "radcds.urlPort" .))) }}
{{- end }}
{{- end }}
{{- if eq .name "inference" }}
{{- if $v.triton.enabled }}
{{ include "radcds.egressToComponent" (dict "root" $root "name" "triton" "port" $v.triton.ports.grpc) }}
{{- else }}
{{ include "radcds.egressRule" (dict "to" $e.tritonTo "ports" (list (last (splitList ":" $v.triton.externalUrl)))) }}
{{- end }}
{{- end }}
{{- if and (has .name (list "inference" "fusion")) $v.imaging.enabled }}
{{ include "radcds.egressToComponent" (dict "root" $root "name" "imaging") }}
{{- end }}
{{- if eq .name "fusion" }}
{{- $ehrPorts := list -}}
{{- range $key := list "EHR_FHIR_BASE_URL" "EHR_TOKEN_URL" -}}
{{- with get $settings $key -}}
{{- $ehrPorts = append $ehrPorts (include "radcds.urlPort" .) -}}
{{- end -}}
{{- end }}
{{- if $ehrPorts }}
{{ include "radcds.egressRule" (dict "to" $e.ehr.to "ports" $ehrPorts) }}
{{- end }}
{{- end }}
{{- if eq .name "referral" }}
{{- if $v.fusion.enabled }}
{{ include "radcds.egressToComponent" (dict "root" $root "name" "fusion") }}
{{- end }}
{{- with $e.ehr.ports }}
{{ include "radcds.egressRule" (dict "to" $e.ehr.to "ports" .) }}
{{- end }}
{{- end }}
{{- if eq .name "reporting" }}
{{- $mllpPorts := list -}}
{{- range $destination := .svc.mllp.destinations -}}
{{- $mllpPorts = append $mllpPorts (last (splitList ":" $destination)) -}}
{{- end }}
{{- if $mllpPorts }}
{{ include "radcds.egressRule" (dict "to" $e.mllpTo "ports" $mllpPorts) }}
{{- end }}
{{- with get $settings "SMART_JWKS_URL" }}
{{ include "radcds.egressRule" (dict "to" $e.identityTo "ports" (list (include "radcds.urlPort" .))) }}
{{- end }}
{{- end }}
{{- if and (eq .name "imaging") (eq (get $settings "STORAGE_BACKEND" | toString) "s3") }}
{{ include "radcds.egressRule" (dict "to" $e.s3To "ports" (list (ternary (include "radcds.urlPort" (get $settings "S3_ENDPOINT_URL" | toString)) "443" (hasKey $settings "S3_ENDPOINT_URL")))) }}
{{- end }}
{{- with get ($e.extra | default dict) .name }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The NetworkPolicy of one component: ingress on its ports from the release, networkPolicy.extraIngressFrom and
the component's own networkPolicy.ingressFrom (the worklist's users come through the ingress controller);
egress restricted for every component with networkPolicy.egress.enabled (radcds.componentEgress), and for the
worklist by worklist.networkPolicy.egress.enabled (radcds.worklistEgress).
*/}}
{{- define "radcds.networkPolicy" -}}
{{- $own := .svc.networkPolicy | default dict -}}
{{- $isWorklist := eq .name "worklist" -}}
{{- $egress := ternary (and $own.egress $own.egress.enabled) .root.Values.networkPolicy.egress.enabled $isWorklist -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "radcds.componentFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "radcds.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "radcds.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if $egress }}
    - Egress
    {{- end }}
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: {{ include "radcds.name" .root }}
              app.kubernetes.io/instance: {{ .root.Release.Name }}
        {{- with .root.Values.networkPolicy.extraIngressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $own.ingressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        {{- range $portName, $port := .svc.ports }}
        - port: {{ $port }}
          protocol: TCP
        {{- end }}
  {{- if $egress }}
  egress:
    {{- include (ternary "radcds.worklistEgress" "radcds.componentEgress" $isWorklist) . | nindent 4 }}
  {{- end }}
{{- end }}
