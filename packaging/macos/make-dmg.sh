#!/usr/bin/env bash
# Make dist/traywire-VERSION.dmg from dist/traywire.app, on macOS, after
#     pyinstaller --noconfirm --clean packaging/macos/traywire.spec
# The image holds the app and a link to /Applications (drag to install).
# CODESIGN_IDENTITY="Developer ID Application: ..." signs the app first
# (unsigned, Gatekeeper asks once: right-click the app > Open).
set -euo pipefail
cd "$(dirname "$0")/../.."
APP=dist/traywire.app
if [ ! -d "$APP" ]; then
  echo "make-dmg.sh: no $APP; build it first: pyinstaller --noconfirm --clean packaging/macos/traywire.spec" >&2
  exit 1
fi
VERSION=$(/usr/libexec/PlistBuddy -c 'Print :CFBundleShortVersionString' "$APP/Contents/Info.plist")
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$STAGE/traywire.app"
fi
DMG=dist/traywire-$VERSION.dmg
hdiutil create -volname "traywire $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG" >/dev/null
echo "$DMG"
