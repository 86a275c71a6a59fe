#!/usr/bin/env bash
# Install PostgreSQL + TimescaleDB from Debian's own packages. Idempotent: quiet when done.
#
#  * Debian 13 (apt offers postgresql-17-timescaledb): install it with postgresql-17.
#  * Debian 12: build Debian's `timescaledb` *source* package (trixie) against the
#    installed PostgreSQL server, Apache-2 edition only (-DAPACHE_ONLY=ON).
#    The trixie deb-src entry lives in a private apt configuration under
#    $LABCTL_APT_DIR; the system's own sources are never touched.
#
# The mirror is read from the machine's apt sources; only the suite changes.
set -euo pipefail

LABCTL_APT_DIR=${LABCTL_APT_DIR:-/var/cache/labctl-apt}
BUILD_DIR=${LABCTL_TSDB_BUILD_DIR:-/var/cache/labctl-tsdb-build}
QUIET_STAMP=/var/lib/labctl/setup-system.done
export DEBIAN_FRONTEND=noninteractive

log() { echo "[setup-system] $*"; }
need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "[setup-system] must run as root (apt-get install); try: sudo $0" >&2
        exit 1
    fi
}

pg_major() {  # major version of the newest installed server, or empty
    local d
    d=$(ls -1d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sed -E 's#.*/postgresql/([0-9]+)/bin/postgres#\1#' | sort -n | tail -1)
    echo "${d}"
}

tsdb_installed() {  # $1 = pg major
    [ -n "$1" ] && ls /usr/lib/postgresql/"$1"/lib/timescaledb*.so >/dev/null 2>&1 \
        && ls /usr/share/postgresql/"$1"/extension/timescaledb.control >/dev/null 2>&1
}

report() {
    local major=$1 path=$2
    local pgv tsv
    pgv=$(/usr/lib/postgresql/"$major"/bin/postgres --version 2>/dev/null || echo "?")
    tsv=$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" /usr/share/postgresql/"$major"/extension/timescaledb.control 2>/dev/null || echo "?")
    log "path: ${path}; ${pgv}; timescaledb ${tsv}"
}

# Fast path: everything already there -> one line, no apt.
MAJOR=$(pg_major)
if [ -n "$MAJOR" ] && tsdb_installed "$MAJOR"; then
    report "$MAJOR" "already installed"
    exit 0
fi

need_root
apt_updated=0
apt_update() { if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi; }

apt_update
if apt-cache show postgresql-17-timescaledb >/dev/null 2>&1 \
        && [ -n "$(apt-cache policy postgresql-17-timescaledb | sed -nE 's/ *Candidate: *//p' | grep -v none)" ]; then
    log "apt offers postgresql-17-timescaledb: installing the binary package"
    apt-get install -y -qq postgresql-17 postgresql-17-timescaledb >/dev/null
    # Debian's postgresql-common creates and starts a system cluster; we use private ones.
    report 17 "binary postgresql-17-timescaledb"
    exit 0
fi

# ---- Debian 12 path: build Debian's timescaledb source package (trixie) ----
MAJOR=${MAJOR:-$(apt-cache policy postgresql | sed -nE 's/ *Candidate: *([0-9]+)\+.*/\1/p')}
if [ -z "$MAJOR" ]; then
    echo "[setup-system] cannot tell which PostgreSQL major version apt offers" >&2
    exit 1
fi
log "apt has no postgresql-17-timescaledb: building Debian's timescaledb source (trixie) against PostgreSQL ${MAJOR}"
apt-get install -y -qq "postgresql-${MAJOR}" "postgresql-server-dev-${MAJOR}" postgresql-contrib \
    cmake gcc make libssl-dev libkrb5-dev dpkg-dev debian-archive-keyring >/dev/null

# The mirror: first Debian archive URI of the machine's own apt sources (deb822 or one-line).
MIRROR=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    MIRROR=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources | grep -v -- '-security' | head -1)
fi
if [ -z "$MIRROR" ]; then
    MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}')
fi
if [ -z "$MIRROR" ]; then
    echo "[setup-system] found no Debian mirror in /etc/apt/sources.list*" >&2
    exit 1
fi

mkdir -p "$LABCTL_APT_DIR"/lists/partial "$LABCTL_APT_DIR"/sources.list.d
cat > "$LABCTL_APT_DIR/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${MIRROR} trixie main
SRC
APT_PRIVATE=(-o "Dir::Etc::SourceList=$LABCTL_APT_DIR/sources.list"
             -o "Dir::Etc::SourceParts=$LABCTL_APT_DIR/sources.list.d"
             -o "Dir::State::Lists=$LABCTL_APT_DIR/lists"
             -o "APT::Get::List-Cleanup=0")
apt-get "${APT_PRIVATE[@]}" update -qq

rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR" && chmod 755 "$BUILD_DIR" && (chown _apt "$BUILD_DIR" 2>/dev/null || true)
(
    cd "$BUILD_DIR"
    apt-get "${APT_PRIVATE[@]}" source -qq --download-only timescaledb >/dev/null
    dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null
    cd src
    export GIT_CEILING_DIRECTORIES="$BUILD_DIR"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAPACHE_ONLY=ON \
        -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DUSE_TELEMETRY=OFF \
        -DPG_CONFIG="/usr/lib/postgresql/${MAJOR}/bin/pg_config" >cmake.log 2>&1
    cmake --build build -j"$(nproc)" >/dev/null
    cmake --install build >/dev/null
)
mkdir -p "$(dirname "$QUIET_STAMP")" && touch "$QUIET_STAMP"
report "$MAJOR" "built from Debian source package timescaledb (trixie), Apache edition"
