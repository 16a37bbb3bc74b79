#!/usr/bin/env bash
# Install Google Research Football (gfootball 2.10.2) into the active Python environment.
#
# gfootball has no wheel on PyPI: its C++ engine builds from source (about 15 minutes on 2
# cores). This script installs the Debian packages the build and the engine need (as root,
# through apt-get), builds the wheel once into a cache folder and installs from there, so a
# second run on the same machine takes seconds. Usage, inside the project's virtualenv:
#
#     bash scripts/install_football.sh
#
# HARL_WHEEL_CACHE overrides the cache folder (default ~/.cache/harl/wheels).
set -euo pipefail

VERSION=2.10.2
CACHE="${HARL_WHEEL_CACHE:-$HOME/.cache/harl/wheels}"
DEBIAN_PACKAGES=(build-essential cmake libgl1-mesa-dev libsdl2-dev libsdl2-image-dev
  libsdl2-ttf-dev libsdl2-gfx-dev libboost-all-dev libdirectfb-dev libst-dev mesa-utils xvfb)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "gfootball needs these Debian packages, and installing them needs root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "[football] apt-get install ${#missing[@]} packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi

mkdir -p "$CACHE"
if ! python -m pip download --no-index --find-links "$CACHE" --no-deps --only-binary :all: \
     -d "$(mktemp -d)" "gfootball==$VERSION" > /dev/null 2>&1; then
  echo "[football] building the gfootball $VERSION wheel into $CACHE (about 15 minutes on 2 cores)"
  python -m pip install -q psutil six wheel setuptools
  python -m pip wheel -q --no-deps --no-build-isolation -w "$CACHE" "gfootball==$VERSION"
fi
# The cached wheel is preferred to PyPI's source archive of the same version. gfootball imports
# six at run time without declaring it, so it is installed alongside.
python -m pip install -q --find-links "$CACHE" "gfootball==$VERSION" six
python -c "import gfootball.env.football_env" && echo "[football] gfootball $VERSION installed"
