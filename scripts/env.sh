# Sourced by scripts/demo and scripts/test: a Python environment with this
# repository installed. Uses the active virtualenv if there is one, else
# makes .venv (Debian's system Python refuses pip installs, PEP 668).
# Installs both distributions, editable: client/ (mediastream) and the root
# (mediabroker). $1: the root's pip extras ("", "test" or "test,examples").
# An install that has nothing new to do is skipped (see install_stamp).

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

# What an install depends on: this checkout (an editable install points at
# it), both pyproject.toml files and this script (the pip command). The
# stamp, in the environment itself, holds that hash and the extras installed
# with it; an install is skipped when the hash is the same, every extra asked
# for is there and both distributions are installed, and were not installed
# again since (by hand, say non-editable). Editable installs see source
# changes without one. Remove the stamp to force an install.
install_hash() {
    { echo "$repo"; cat "$repo/pyproject.toml" "$repo/client/pyproject.toml" "$repo/scripts/env.sh"; } \
        | sha256sum | cut -d' ' -f1
}

install_is_current() {  # $1: the stamp file, $2: the hash, $3: the extras asked for
    [ -f "$1" ] || return 1
    local stamped_hash stamped_extras extra
    { read -r stamped_hash; read -r stamped_extras; } <"$1" || true
    [ "$stamped_hash" = "$2" ] || return 1
    for extra in ${3//,/ }; do
        [[ ",$stamped_extras," == *",$extra,"* ]] || return 1
    done
    local records record
    records=$("$python" -I -c 'import importlib.metadata as m
for name in ("mediastream", "mediabroker"):
    print(next(f.locate() for f in m.distribution(name).files if f.name == "RECORD"))' 2>/dev/null) \
        || return 1
    while read -r record; do
        [ "$1" -nt "$record" ] || return 1
    done <<<"$records"
}

install_stamp=${python%/bin/python}/.mediabroker-installed
install_wanted=$(install_hash)
if ! install_is_current "$install_stamp" "$install_wanted" "${1:-}"; then
    extras=${1:-}
    if [ -f "$install_stamp" ] && [ "$(head -n 1 "$install_stamp")" = "$install_wanted" ]; then
        extras=$(sed -n 2p "$install_stamp")${extras:+,$extras}  # still installed: keep them
    fi
    # Wheels only for the examples' scikit-image and the scipy under it: built
    # from source they take many minutes and a Fortran compiler.
    "$python" -m pip install -q --disable-pip-version-check --only-binary=scikit-image,scipy \
        -e "$repo/client" -e "$repo${1:+[$1]}"
    printf '%s\n%s\n' "$install_wanted" "${extras#,}" >"$install_stamp"
fi
