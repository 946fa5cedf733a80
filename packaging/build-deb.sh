#!/usr/bin/env bash
# Build pve-balancer_<version>_<arch>.deb: an application venv under /opt/pve-balancer (the
# runtime only, at the versions of requirements.lock), the systemd units, the example config
# and maintainer scripts that create the user and never start anything unconfigured.
#
#   packaging/build-deb.sh [OUTDIR]          (default: dist/)
#
# Build on the Debian release you install on (13 for PVE 9, or 12): the venv is tied to that
# release's /usr/bin/python3, and to the machine's architecture (orjson, PyYAML and tornado
# carry compiled code), so the package says both in Depends and Architecture.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-dist}
PYTHON=/usr/bin/python3
PREFIX=/opt/pve-balancer
VERSION=$($PYTHON -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
ARCH=$(dpkg --print-architecture)
PYVER=$($PYTHON -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
NEXT=$($PYTHON -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
NAME=pve-balancer_${VERSION}_${ARCH}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/$NAME

# The venv is built where it will live, then moved into the package tree: its scripts and
# pyvenv.cfg name /opt/pve-balancer, as they must once installed.
STAGE=$WORK/venv-build
$PYTHON -m venv "$STAGE"
"$STAGE/bin/pip" install --quiet --disable-pip-version-check --no-deps -r requirements.lock
"$STAGE/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-compile .
"$STAGE/bin/pip" check
"$STAGE/bin/pip" uninstall --quiet --yes pip
mkdir -p "$ROOT$PREFIX"
cp -a "$STAGE/." "$ROOT$PREFIX/"
# Rewrite the build location in scripts (shebangs, activate*) to the installed one.
grep -rlI --null "$STAGE" "$ROOT$PREFIX" | xargs -0 -r sed -i "s|$STAGE|$PREFIX|g"
find "$ROOT$PREFIX" -name __pycache__ -type d -prune -exec rm -rf {} +

# Entry points on PATH.
mkdir -p "$ROOT/usr/bin"
ln -s "$PREFIX/bin/pve-balancer" "$ROOT/usr/bin/pve-balancer"

# systemd units and their shared drop-in.
mkdir -p "$ROOT/usr/lib/systemd/system"
cp -r packaging/systemd/. "$ROOT/usr/lib/systemd/system/"

# Documentation and examples; /etc/pve-balancer holds only what the operator writes.
DOC=$ROOT/usr/share/doc/pve-balancer
mkdir -p "$DOC/examples"
cp README.md "$DOC/"
cp config/balancer.yaml.example "$DOC/examples/balancer.yaml"
cp packaging/debian/env.example "$DOC/examples/env"
if [ -f LICENSE ]; then
  cp LICENSE "$DOC/copyright"
else
  printf 'pve-balancer\nSee /usr/share/doc/pve-balancer/README.md.\n' > "$DOC/copyright"
fi

mkdir -p "$ROOT/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@PYVER@/$PYVER/" -e "s/@NEXT@/$NEXT/" packaging/debian/control.in > "$ROOT/DEBIAN/control"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$ROOT/DEBIAN/$script"
done

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$OUT/$NAME.deb" >/dev/null
echo "$OUT/$NAME.deb"
