#!/bin/bash
# Debian tools some tests use, installed with apt when missing: dciodvfy (dicom3tools) validates every
# DICOM file written, and an Orthanc server with DICOMweb (started by the tests on 127.0.0.1) stores
# and returns them. Part of the README's test command (and so of .ci/run).
set -euo pipefail
if ! command -v dciodvfy >/dev/null || [ ! -x /usr/sbin/Orthanc ] || ! ls /usr/share/orthanc/plugins/*DicomWeb* >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dicom3tools orthanc orthanc-dicomweb
fi
