#!/bin/bash
# Debian packages some tests use, installed with apt when missing (as root, or with sudo). Part of the
# README's test command, and so of .ci/run:
# - dicom3tools (dciodvfy) validates every DICOM file written; Orthanc with its DICOMweb plugin, started
#   by the tests on 127.0.0.1, stores and returns them (Testing/dicomout);
# - the system libraries Qt (PySide6, offscreen platform) needs to run the module's panel (Testing/slicer).
set -euo pipefail
QT_LIBS="libegl1 libgl1 libopengl0 libxkbcommon0 libfontconfig1 libfreetype6 libdbus-1-3 libx11-6 libxcb1"
DICOM_TOOLS="dicom3tools orthanc orthanc-dicomweb"
missing() {
  ! command -v dciodvfy >/dev/null || [ ! -x /usr/sbin/Orthanc ] || ! ls /usr/share/orthanc/plugins/*DicomWeb* >/dev/null 2>&1 \
    || ! ldconfig -p | grep -q libEGL.so.1 || ! ldconfig -p | grep -q libxkbcommon.so.0
}
if missing; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install_system_tools.sh: needs root or sudo to install: $DICOM_TOOLS $QT_LIBS libglib2.0-0" >&2; exit 1
  fi
  $SUDO apt-get update -qq
  GLIB=$(apt-cache show libglib2.0-0t64 >/dev/null 2>&1 && echo libglib2.0-0t64 || echo libglib2.0-0)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DICOM_TOOLS $QT_LIBS "$GLIB" >/dev/null
fi
