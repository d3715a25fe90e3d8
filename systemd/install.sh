#!/usr/bin/env bash
# Install the gateway as systemd services on a Jetson (run as root from a checkout: sudo systemd/install.sh).
# Code goes to /opt/jetson-gateway, settings to /etc/jetson-gateway; existing settings are never overwritten.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
APP=/opt/jetson-gateway
CONF=/etc/jetson-gateway
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

echo "==> user jetson-gateway"
id jetson-gateway >/dev/null 2>&1 || useradd --system --home "$APP" --shell /usr/sbin/nologin jetson-gateway
for group in video render; do
    getent group "$group" >/dev/null && usermod -aG "$group" jetson-gateway
done

echo "==> code in $APP"
mkdir -p "$APP"
if [ "$SRC" != "$APP" ]; then
    tar -C "$SRC" --exclude=.venv --exclude=var --exclude=.git --exclude=staticfiles -cf - . | tar -C "$APP" -xf -
fi
[ -x "$APP/.venv/bin/python" ] || "$PYTHON" -m venv "$APP/.venv"
"$APP/.venv/bin/pip" install --progress-bar on -r "$APP/requirements.txt"
mkdir -p "$APP/var/prometheus" "$APP/staticfiles"  # the request-metrics directory must be the service's own
chown -R jetson-gateway:jetson-gateway "$APP/var" "$APP/staticfiles"

echo "==> settings in $CONF"
mkdir -p "$CONF/llama"
if [ ! -f "$CONF/gateway.env" ]; then
    {
        echo "SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')"
        echo "ALLOWED_HOSTS=$(hostname),$(hostname).local,localhost,127.0.0.1"
        echo "GATEWAY_HOST=0.0.0.0"
        echo "GATEWAY_PORT=9000"
        echo "VAR_DIR=$APP/var"
        echo "STATIC_ROOT=$APP/staticfiles"
        echo "# Behind a reverse proxy: its address, the only one whose X-Forwarded-For/-Proto is believed."
        echo "#TRUSTED_PROXIES=127.0.0.1"
        echo "# See $APP/.env.example for every setting."
    } > "$CONF/gateway.env"
    chmod 640 "$CONF/gateway.env"
    chgrp jetson-gateway "$CONF/gateway.env"
    echo "    wrote $CONF/gateway.env (edit ALLOWED_HOSTS, DATABASE_URL, REDIS_URL as needed)"
fi
[ -f "$CONF/llama/example.env" ] || cp "$SRC/systemd/llama-example.env" "$CONF/llama/example.env"
# A key for each llama-server@<name> the operator runs (readable by the service user alone); existing ones are kept.
for env_file in "$CONF"/llama/*.env; do
    key_file="${env_file%.env}.key"
    if [ ! -f "$key_file" ]; then
        (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$key_file")
        chown jetson-gateway:jetson-gateway "$key_file"
    fi
done
# llama-server logs, keys and the supervisor's socket live under var/: the service user's alone (tightened on upgrade).
chmod 700 "$APP/var"

echo "==> units"
install -m 644 "$SRC"/systemd/*.service /etc/systemd/system/
systemctl daemon-reload
cat <<DONE
Installed. Next:
  1. systemctl enable --now jetson-gateway jetson-gateway-supervisor jetson-gateway-monitor
  2. sudo -u jetson-gateway env \$(cat $CONF/gateway.env | xargs) $APP/.venv/bin/python $APP/manage.py createsuperuser
  3. register each model, started on demand by the supervisor within the memory budget:
       ... manage.py addmodel <id> --gguf /path/model.gguf [--mmproj …] [--ctx-size N] [--gpu-layers 99] [--kind …]
     or one you run yourself (one env file per model in $CONF/llama/, see example.env, then
     systemctl enable --now llama-server@<name>): ... manage.py addmodel <id> --backend http://127.0.0.1:<port>
DONE
