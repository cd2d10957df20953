#!/usr/bin/env bash
# Build the traywire .deb: traywire and its Python dependencies in a virtual
# environment under /opt/traywire, made with the build machine's system Python
# (/usr/bin/python3), which the package then depends on. Why not a PyInstaller
# bundle: see docs/INSTALL.md ("How the .deb is built").
#
#   bash scripts/build-deb.sh [--out DIR] [--revision N] [--python /usr/bin/python3.X] [--fast]
#
# --fast compresses with xz -1 instead of -6 (about 3 s instead of 20 s here,
# and 17 MB instead of 15 MB): for tests, not releases.
# Needs: python3-venv (for the system Python), dpkg-deb; network access to PyPI
# at build time only (the package installs offline). Build on the distribution
# release you install on: the package depends on that release's python3.X.
# Prints the path of the .deb as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=$ROOT/dist
REVISION=1
PY=/usr/bin/python3
LEVEL=6
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --revision) REVISION=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --fast) LEVEL=1; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

die() { echo "build-deb.sh: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: build on Debian or Ubuntu"
[ -x "$PY" ] || die "$PY not found (apt-get install python3 python3-venv)"
case "$REVISION" in *[!0-9A-Za-z.+~]* | "") die "bad --revision $REVISION" ;; esac

PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYBIN=/usr/bin/python$PYVER
[ -x "$PYBIN" ] || die "$PYBIN not found: the package runs on the system's python$PYVER"
"$PYBIN" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "traywire needs Python 3.11+"
"$PYBIN" -c 'import ensurepip' 2>/dev/null || die "no venv support in $PYBIN (apt-get install python3-venv)"
VERSION=$("$PYBIN" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
ARCH=$(dpkg --print-architecture)
DEBVERSION="$VERSION-$REVISION"

WORK=$(mktemp -d /tmp/traywire-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
APP=/opt/traywire
VENV=$STAGE$APP/venv
SITE=$VENV/lib/python$PYVER/site-packages
started=$(date +%s)
last=$started
phase() { # phase NAME: how long the step before took, on stderr
  local now
  now=$(date +%s)
  echo "build-deb.sh: $1: $((now - last)) s" >&2
  last=$now
}

# 1. A clean copy of the sources (no caches, no egg-info, nothing from .venv).
mkdir -p "$WORK/src"
cp -r pyproject.toml README.md src "$WORK/src/"
find "$WORK/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

# 2. The virtual environment, at its final path under the staging root.
"$PYBIN" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
  --no-warn-script-location "$WORK/src"
"$VENV/bin/python" -m pip uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
rm -f "$VENV"/bin/activate* "$VENV"/bin/Activate.ps1 "$VENV"/bin/pip*
find "$SITE" -name direct_url.json -delete
phase "venv with traywire and its dependencies"
# The tray uses Debian's PyGObject (python3-gi, built for this python3.X).
ln -s /usr/lib/python3/dist-packages/gi "$SITE/gi"
# Paths that name the staging directory (script shebangs, pyvenv.cfg) -> /opt.
grep -rlI --null -F "$STAGE" "$VENV" | xargs -0 -r sed -i "s#$STAGE##g"
# Byte code now, with the installed paths in it; unchecked-hash .pyc files are
# never rewritten, so nothing appears in /opt that dpkg does not know about.
"$VENV/bin/python" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
  -s "$STAGE" -p / "$VENV/lib" >/dev/null
if grep -rl --binary-files=text -F "$WORK" "$STAGE" >/dev/null; then
  grep -rl --binary-files=text -F "$WORK" "$STAGE" | head >&2
  die "the build directory is still named in the files above"
fi
phase "paths and byte code"

# 3. Everything else the package installs.
install -D -m 755 packaging/linux/traywire "$STAGE/usr/bin/traywire"
install -D -m 644 packaging/linux/traywire.desktop "$STAGE/usr/share/applications/traywire.desktop"
for size in 16 22 24 32 48 64 128 256 512; do
  install -D -m 644 "assets/png/traywire-$size.png" \
    "$STAGE/usr/share/icons/hicolor/${size}x${size}/apps/traywire.png"
done
install -D -m 644 packaging/systemd/user/traywire.service "$STAGE/usr/lib/systemd/user/traywire.service"
install -D -m 644 packaging/systemd/system/traywire.service "$STAGE/usr/lib/systemd/system/traywire.service"
DOC=$STAGE/usr/share/doc/traywire
install -D -m 644 packaging/linux/copyright "$DOC/copyright"
install -m 644 docs/INSTALL.md "$DOC/INSTALL.md"
gzip -9n -c README.md >"$DOC/README.md.gz"
chmod 644 "$DOC/README.md.gz"
{
  echo "traywire ($DEBVERSION) unstable; urgency=medium"
  echo
  echo "  * Built from the traywire $VERSION sources."
  echo
  echo " -- traywire developers <traywire@users.noreply.github.com>  $(LC_ALL=C date -R ${SOURCE_DATE_EPOCH:+-d @$SOURCE_DATE_EPOCH})"
} | gzip -9n >"$DOC/changelog.Debian.gz"
chmod 644 "$DOC/changelog.Debian.gz"

if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$STAGE/usr/share/applications/traywire.desktop"
fi

# 4. Control files.
chmod -R u=rwX,go=rX "$STAGE"
mkdir -p "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
  install -m 755 "packaging/linux/$script" "$STAGE/DEBIAN/$script"
done
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 644 "$STAGE/DEBIAN/md5sums"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$DEBVERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@PYTHON@/python$PYVER/" \
  -e "s/@INSTALLED_SIZE@/$SIZE/" packaging/linux/control.in >"$STAGE/DEBIAN/control"

mkdir -p "$OUT"
DEB=$OUT/traywire_${DEBVERSION}_${ARCH}.deb
phase "the rest of the tree"
dpkg-deb --root-owner-group -Zxz "-z$LEVEL" --build "$STAGE" "$DEB" >/dev/null
phase "dpkg-deb"
echo "built $DEB ($(du -h "$DEB" | cut -f1), $(($(date +%s) - started)) s)" >&2
echo "$DEB"
