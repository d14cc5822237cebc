#!/bin/sh
# deps.sh - install the Debian packages the build, the stack and the tests need, only when
# missing. Runs apt-get as root (or through sudo when available).
set -eu

PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
libuv1-dev libzmq3-dev libpq-dev libmsgpack-dev libssl-dev libjansson-dev
libcurl4-openssl-dev libcrypt-dev libcmocka-dev node-llhttp libseccomp-dev libpython3.11-dev libjemalloc-dev
python3 python3-zmq postgresql postgresql-client openssl procps wrk"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: need root to install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The Debian postgresql package starts its own cluster; the project runs its own, so stop it.
if command -v pg_lsclusters >/dev/null 2>&1; then
    $SUDO pg_ctlcluster --force 15 main stop >/dev/null 2>&1 || true
fi
