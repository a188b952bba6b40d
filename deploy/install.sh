#!/usr/bin/env bash
# Install or upgrade the rating bot as a systemd service, from this checkout:
#   sudo deploy/install.sh
# What it does is what deploy/rating-bot.service's header lists; deploy/README.md ("systemd")
# explains each step. Running it again upgrades: it backs the database up (online, while the
# service runs), reinstalls the project, keeps the settings, and restarts a running service,
# which applies any schema migration as it starts.
set -euo pipefail

PYTHON=${PYTHON:-python3}
SERVICE_USER=rating-bot
PREFIX=/opt/rating-bot
CONF_DIR=/etc/rating-bot
SETTINGS=$CONF_DIR/rating-bot.env
STATE_DIR=/var/lib/rating-bot
UNIT=/etc/systemd/system/rating-bot.service
CLI=/usr/local/sbin/rating-bot
repo=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
command -v systemctl >/dev/null || die "systemd is needed (for Docker, see deploy/compose.yaml)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "Python 3.11 or newer is needed (with its venv module: apt install python3-venv); set PYTHON=/path/to/python3.11"

# 1. The user the service runs as: a system account that cannot log in.
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi

# 2. An upgrade backs the database up first: SQLite's online backup, taken as the service's
#    user (a root-owned -wal file would lock the service out), consistent while it runs.
for db in "$STATE_DIR"/data/*.sqlite3; do
    [ -f "$db" ] || continue
    backup=$STATE_DIR/backups/$(basename "$db" .sqlite3)-$(date -u +%Y%m%dT%H%M%SZ).sqlite3
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$STATE_DIR/backups"
    runuser -u "$SERVICE_USER" -- "$PYTHON" -c \
        'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
        "$db" "$backup"
    echo "backed up $db to $backup"
done

# 3. The code: a virtualenv owned by root, so the service cannot rewrite what it runs. pip
#    builds inside the folder it is given (build/, *.egg-info): it gets a fresh copy of what the
#    image copies (deploy/Dockerfile), so the checkout gets no root-owned files and an upgrade
#    never installs a module that only a previous version's build/ still holds.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -R "$repo/pyproject.toml" "$repo/README.md" "$repo/bot" "$repo/handlers" "$src/"
install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/.venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/.venv"
"$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/.venv/bin/python" -m pip install --quiet --no-cache-dir "$src"
# The virtualenv runs the interpreter it was made from, which the service's user must be able to
# run: one under root's home (pyenv's) is not.
runuser -u "$SERVICE_USER" -- "$PREFIX/.venv/bin/python" -c pass 2>/dev/null \
    || die "$SERVICE_USER cannot run $PREFIX/.venv/bin/python: rm -r $PREFIX/.venv and run again with PYTHON=/usr/bin/python3"

# 4. The settings: created once from the example, never overwritten. The service listens on
#    loopback only: in webhook mode the reverse proxy on this host forwards to it.
install -d -o root -g "$SERVICE_USER" -m 0750 "$CONF_DIR"
if [ ! -e "$SETTINGS" ]; then
    sed 's/^# BOT_HOST=0\.0\.0\.0$/BOT_HOST=127.0.0.1/' "$repo/deploy/.env.example" > "$SETTINGS"
    chown root:"$SERVICE_USER" "$SETTINGS"
    chmod 0640 "$SETTINGS"
    created_settings=yes
fi

# 5. The unit and the command-line wrapper.
install -m 0644 "$repo/deploy/rating-bot.service" "$UNIT"
install -m 0755 "$repo/deploy/rating-bot" "$CLI"
systemctl daemon-reload

if systemctl is-active --quiet rating-bot; then
    systemctl restart rating-bot
    echo "upgraded and restarted: journalctl -u rating-bot -f"
    exit 0
fi
if [ "${created_settings:-}" = yes ]; then
    echo "next: fill in the two <placeholders> in $SETTINGS"
fi
echo "then: rating-bot check && systemctl enable --now rating-bot"
