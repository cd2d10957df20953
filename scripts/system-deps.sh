#!/usr/bin/env bash
# Debian/Ubuntu packages the test suite uses. Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
PKGS=(
  # a real Secret Service for the keyring tests
  dbus gnome-keyring libglib2.0-bin
  # the .desktop start-at-login entry is validated and launched
  desktop-file-utils
  # a real tray under a virtual display: X server, tray host, notification
  # daemon, screenshots, and what PyGObject (pystray's GTK/AppIndicator
  # backends) needs to build and run
  xvfb trayer dunst imagemagick gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1
  libgirepository1.0-dev libcairo2-dev pkg-config gcc
  # the dashboard in a real headless browser (driven by Playwright, which
  # never downloads a browser of its own here)
  chromium fonts-liberation
  # the .deb (scripts/build-deb.sh, tests/test_deb.py): built on the system
  # Python with dpkg-deb, run with Debian's PyGObject, its systemd units checked
  # by systemd-analyze, its shell scripts by shellcheck
  python3 python3-venv python3-gi systemd shellcheck
  # a real Redis for the shared-state tests (each test starts its own server
  # on a free port; the system service is never used)
  redis-server
)
if [ ${#PKGS[@]} -eq 0 ]; then exit 0; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
