# Sourced by scripts/demo and scripts/test: a Python environment with this
# repository installed. Uses the active virtualenv if there is one, else
# makes .venv (Debian's system Python refuses pip installs, PEP 668).
# $1: the pip extras to install ("", "test" or "test,examples").

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

apt_install() {  # installs the Debian packages not yet present; only as root
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "note: not root, so not installing ${missing[*]}; tests that need them will say so" >&2
        return 0
    fi
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ -n "${VIRTUAL_ENV:-}" ]; then
    python=$VIRTUAL_ENV/bin/python
else
    if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
        apt_install python3-venv
    fi
    [ -x "$repo/.venv/bin/python" ] || python3 -m venv "$repo/.venv"
    python=$repo/.venv/bin/python
fi
extra=${1:+[$1]}
# Wheels only for the examples' scikit-image and the scipy under it: built
# from source they take many minutes and a Fortran compiler.
"$python" -m pip install -q --disable-pip-version-check --only-binary=scikit-image,scipy \
    -e "$repo$extra"
