#!/usr/bin/env bash
# Installs the Debian packages the local stack and the integration tests need, only if missing:
# a Java runtime and Maven (Apache Kafka from Maven Central jars), PostgreSQL server binaries and
# dcmtk (a real DICOM peer for the DIMSE tests), Orthanc with its DICOMweb plugin (a real PACS peer and
# the imaging benchmark's baseline), Node.js and npm (the simple-hl7 MLLP peer and the npm `fhir` validator),
# a JDK (the HAPI HL7v2 and HAPI FHIR validator harnesses are Java sources run by `java`), and the independent
# DICOM validators dicom3tools (dciodvfy) and pixelmed-apps (DicomSRValidator), and Chromium (the worklist's
# browser tests drive /usr/bin/chromium headless with Python playwright; no browser is downloaded), and
# buildah, mmdebstrap and skopeo (`make images`: container images built without a Docker engine), and
# faketime (libfaketime: the fault suite runs services under a jumped clock) and a C compiler (the small
# preload shim next to it, tests/faults/clockshim.c).
set -euo pipefail
need=()
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc orthanc-dicomweb)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
[ -f /usr/share/java/pixelmed.jar ] || need+=(pixelmed-apps)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "radcds: missing Debian packages: ${need[*]} (run as root or install them: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "radcds: installing ${need[*]} from Debian"
mkdir -p /usr/sbin
# Keep package services from starting on their own: we run our own instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
