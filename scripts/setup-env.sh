#!/usr/bin/env bash
# Create .venv and install napari-unet into it (editable), with PyQt5 and, for `make test`, the
# testing extra. Called by the Makefile; safe to run again (it only does what is missing).
#
#   scripts/setup-env.sh [EXTRAS]      e.g. scripts/setup-env.sh pyqt5,testing
#   VENV=.venv-pyqt6 scripts/setup-env.sh pyqt6,testing     (another venv)
#   VENV=.venv-pyqt6 BASE_VENV=.venv scripts/setup-env.sh pyqt6,testing
#       another venv layered on .venv (`make test-pyqt6`): it sees .venv's packages through a
#       .pth file and installs only what differs (PyQt6), in seconds instead of minutes; the
#       base's PyQt5 is hidden there (a stub that refuses to import), so only PyQt6 can load.
#
# Torch: when the venv has no torch, `torch==2.13.0` is installed first, so that the loose
# `torch>=2.2` in setup.cfg is already satisfied and pip never pulls a CUDA build by accident
# (on a machine with a local CPU wheel that pin takes it; elsewhere the registry's default build).
set -euo pipefail
extras=${1:-pyqt5}
py=${PYTHON:-python3}
venv=${VENV:-.venv}
torch_pin=${TORCH_PIN:-torch==2.13.0}

# --- system packages for a headless display (Xvfb + the libraries Qt/OpenGL need) -----------
sys_pkgs="xvfb xauth libgl1-mesa-dri libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxkbcommon-x11-0
libxcb-cursor0 libdbus-1-3 libfontconfig1"
if [ "$(uname -s)" = Linux ] && [ "${NAPARI_UNET_SKIP_SYSTEM_PACKAGES:-0}" != 1 ]; then
  if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in $sys_pkgs; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
      else
        echo "setup: missing system packages for a headless display; install them (as root) with: apt-get install ${missing[*]}" >&2
        exit 1
      fi
    fi
  elif ! command -v Xvfb >/dev/null 2>&1 && [ -z "${DISPLAY:-}" ]; then
    echo "setup: no display and no Xvfb; install Xvfb and the Qt/OpenGL X11 libraries (Debian names: $(echo $sys_pkgs))" >&2
    exit 1
  fi
fi

# --- the virtual environment -----------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
if [ -n "${BASE_VENV:-}" ]; then
  base_site=$(cd "$BASE_VENV" && "$PWD/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
  site=$("$vpy" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
  echo "$base_site" > "$site/_napari_unet_base_venv.pth"
  if [[ ",$extras," == *",pyqt6,"* ]]; then
    mkdir -p "$site/PyQt5"
    echo "raise ImportError('PyQt5 is hidden in $venv (a PyQt6 venv layered on $BASE_VENV)')" > "$site/PyQt5/__init__.py"
  fi
fi
if ! "$vpy" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing $torch_pin"
  "$vpy" -m pip install -q "$torch_pin"
fi
echo "setup: installing napari-unet[$extras] (editable)"
"$vpy" -m pip install -q -e ".[$extras]"
