# shellcheck shell=bash
# Idempotent machine setup shared by scripts/gridedge and scripts/test.
# Sourced, not executed. Everything is keyed on content hashes so that a re-run with nothing
# changed costs a few hundred milliseconds.

GRIDEDGE_USER="${GRIDEDGE_USER:-gridedge}"
GRIDEDGE_STATE="${GRIDEDGE_STATE:-/var/lib/gridedge}"
GRIDEDGE_VENV="$GRIDEDGE_STATE/venv"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

APT_PACKAGES=(python3 python3-venv python3-dev build-essential git procps util-linux ca-certificates)

log() { printf '[gridedge] %s\n' "$*" >&2; }
die() { printf '[gridedge] error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

ensure_apt() {
    local missing=()
    for p in "${APT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "missing Debian packages (${missing[*]}): run this as root once"
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

ensure_user() {
    if ! id "$GRIDEDGE_USER" >/dev/null 2>&1; then
        is_root || die "user $GRIDEDGE_USER does not exist: run this as root once"
        log "creating the unprivileged platform user $GRIDEDGE_USER"
        useradd --system --create-home --home-dir "$GRIDEDGE_STATE" --shell /bin/bash "$GRIDEDGE_USER"
        # dialout: serial ports; gpio: relays on a Pi (the group exists only there)
        usermod -a -G dialout "$GRIDEDGE_USER" 2>/dev/null || true
        getent group gpio >/dev/null && usermod -a -G gpio "$GRIDEDGE_USER"
    fi
    if is_root; then
        mkdir -p "$GRIDEDGE_STATE"
        chown "$GRIDEDGE_USER:" "$GRIDEDGE_STATE"
        chmod 755 "$GRIDEDGE_STATE"
    fi
}

# Run a command as the platform user, keeping the environment (CA bundles, pip settings).
as_platform_user() {
    if is_root; then
        runuser -u "$GRIDEDGE_USER" -- env HOME="$GRIDEDGE_STATE" USER="$GRIDEDGE_USER" LOGNAME="$GRIDEDGE_USER" "$@"
    else
        "$@"
    fi
}

file_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

tree_hash() {
    # content hash of a source tree, ignoring caches
    (cd "$REPO_ROOT" && find "$@" -type f \( -name '*.py' -o -name '*.toml' -o -name '*.dbc' -o -name '*.json' -o -name '*.csv' -o -name '*.txt' -o -name '*.html' -o -name '*.js' -o -name '*.css' \) \
        -not -path '*/__pycache__/*' -not -path '*/build/*' -not -path '*/dist/*' -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

ensure_venv() {
    local want have
    want="$(file_hash "$REPO_ROOT/requirements.txt")"
    have="$(cat "$GRIDEDGE_STATE/.requirements.hash" 2>/dev/null || true)"
    if [ ! -x "$GRIDEDGE_VENV/bin/python" ]; then
        log "creating the platform venv (Debian's python3)"
        as_platform_user /usr/bin/python3 -m venv "$GRIDEDGE_VENV" || die "venv creation failed"
        have=""
    fi
    if [ "$want" != "$have" ]; then
        log "installing Python requirements into the platform venv"
        cp "$REPO_ROOT/requirements.txt" "$GRIDEDGE_STATE/requirements.txt"
        chown "$GRIDEDGE_USER:" "$GRIDEDGE_STATE/requirements.txt" 2>/dev/null || true
        # wheel first: sdists among the dependencies then build as wheels, not via setup.py install
        as_platform_user "$GRIDEDGE_VENV/bin/pip" install -q wheel || die "pip install wheel failed"
        as_platform_user "$GRIDEDGE_VENV/bin/pip" install -q -r "$GRIDEDGE_STATE/requirements.txt" \
            || die "pip install -r requirements.txt failed (see above)"
        echo "$want" > "$GRIDEDGE_STATE/.requirements.hash"
    fi
}

# Build wheels of the shared library, the agents and the driver interfaces into $GRIDEDGE_STATE/wheels
# and install the library into the venv. The platform user may not be able to read the checkout
# (a clone under /root), so the wheels are built as root and handed over.
ensure_wheels() {
    local want have
    want="$(tree_hash gridedge agents pyproject.toml)"
    have="$(cat "$GRIDEDGE_STATE/.wheels.hash" 2>/dev/null || true)"
    [ "$want" = "$have" ] && [ -d "$GRIDEDGE_STATE/wheels" ] && return 0
    log "building wheels (library, agents, driver interfaces)"
    local out="$GRIDEDGE_STATE/wheels.new"
    rm -rf "$out"; mkdir -p "$out"
    local build_root; build_root="$(mktemp -d)"
    local d
    for d in "$REPO_ROOT" "$REPO_ROOT"/agents/*/ "$REPO_ROOT"/agents/drivers/*/; do
        [ -f "$d/pyproject.toml" ] || continue
        # build from a copy so that no build/ folder lands in the checkout
        local name; name="$(basename "$d")"
        rm -rf "${build_root:?}/$name"; mkdir -p "$build_root/$name"
        (cd "$d" && tar --exclude=__pycache__ --exclude=build --exclude=dist --exclude=agents --exclude=tests --exclude=.git -cf - .) | (cd "$build_root/$name" && tar -xf -)
        "$GRIDEDGE_VENV/bin/pip" wheel -q --no-deps --no-build-isolation -w "$out" "$build_root/$name" >/dev/null \
            || die "building the wheel of ${d#"$REPO_ROOT"/} failed"
    done
    rm -rf "$build_root"
    cp "$GRIDEDGE_STATE"/wheels/volttron_*.whl "$out"/ 2>/dev/null || true
    rm -rf "$GRIDEDGE_STATE/wheels"; mv "$out" "$GRIDEDGE_STATE/wheels"
    chown -R "$GRIDEDGE_USER:" "$GRIDEDGE_STATE/wheels" 2>/dev/null || true
    as_platform_user "$GRIDEDGE_VENV/bin/pip" install -q --no-deps --force-reinstall "$GRIDEDGE_STATE"/wheels/gridedge-*.whl \
        || die "installing the gridedge library wheel failed"
    echo "$want" > "$GRIDEDGE_STATE/.wheels.hash"
}

ensure_all() {
    ensure_apt "$@"
    ensure_user
    ensure_venv
    ensure_wheels
    ensure_thirdparty_wheels
    ensure_configs
    export_gridedge_env
}

# The platform driver and the historian come from PyPI as agent wheels; the platform gets copies
# without Requires-Dist (see gridedge/platform/wheels.py). Downloaded once, versions from requirements.txt.
ensure_thirdparty_wheels() {
    local spec name dir="$GRIDEDGE_STATE/thirdparty"
    mkdir -p "$dir"
    for name in volttron-platform-driver volttron-sqlite-historian; do
        spec="$(grep -E "^${name}==" "$REPO_ROOT/requirements.txt" | head -1)"
        [ -n "$spec" ] || die "requirements.txt pins no version of $name"
        local file; file="$(echo "${spec}" | sed 's/-/_/g; s/==/-/')-py3-none-any.whl"
        if [ ! -f "$dir/$file" ]; then
            log "downloading the $spec agent wheel"
            "$GRIDEDGE_VENV/bin/pip" download -q --no-deps -d "$dir" "$spec" >"$dir/download.log" 2>&1 \
                || { cat "$dir/download.log" >&2; die "pip download $spec failed"; }
        fi
        if [ ! -f "$GRIDEDGE_STATE/wheels/$file" ]; then
            "$GRIDEDGE_VENV/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[3]); from pathlib import Path; from gridedge.platform.wheels import strip_requirements; strip_requirements(Path(sys.argv[1]), Path(sys.argv[2]))' \
                "$dir/$file" "$GRIDEDGE_STATE/wheels" "$REPO_ROOT" || die "preparing $file failed"
            chown "$GRIDEDGE_USER:" "$GRIDEDGE_STATE/wheels/$file" 2>/dev/null || true
        fi
    done
}

# Site configs are copied to the state folder: the platform user may not read the checkout.
ensure_configs() {
    local want have
    want="$(tree_hash platform_config driver_configs)"
    have="$(cat "$GRIDEDGE_STATE/.config.hash" 2>/dev/null || true)"
    [ "$want" = "$have" ] && [ -d "$GRIDEDGE_STATE/config" ] && return 0
    rm -rf "$GRIDEDGE_STATE/config.new"
    mkdir -p "$GRIDEDGE_STATE/config.new"
    cp -r "$REPO_ROOT/platform_config" "$REPO_ROOT/driver_configs" "$GRIDEDGE_STATE/config.new/"
    rm -rf "$GRIDEDGE_STATE/config"; mv "$GRIDEDGE_STATE/config.new" "$GRIDEDGE_STATE/config"
    chown -R "$GRIDEDGE_USER:" "$GRIDEDGE_STATE/config" 2>/dev/null || true
    echo "$want" > "$GRIDEDGE_STATE/.config.hash"
}

export_gridedge_env() {
    export GRIDEDGE_STATE GRIDEDGE_VENV GRIDEDGE_USER
    export GRIDEDGE_CONFIG_DIR="${GRIDEDGE_CONFIG_DIR:-$GRIDEDGE_STATE/config}"
    export GRIDEDGE_WHEELS="${GRIDEDGE_WHEELS:-$GRIDEDGE_STATE/wheels}"
    export GRIDEDGE_SITE_DIR="${GRIDEDGE_SITE_DIR:-$GRIDEDGE_STATE/site}"
}
