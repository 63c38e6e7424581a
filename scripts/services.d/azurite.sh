# shellcheck shell=bash
# Azurite 3.35.0 (npm; Microsoft's official Azure Storage emulator), blob service only, on
# 127.0.0.1:10000, used by the azure-blob destination's tests. Account `devstoreaccount1` with
# Azurite's published dev key. Sourced by scripts/services (helpers: say, start_bg, wait_for, …).
azurite() {
  local port=10000 d="$STATE/azurite"
  local url="http://127.0.0.1:$port/devstoreaccount1"
  # Any response (even 400/403 for an unsigned request) proves the blob service answers.
  if port_open "$port" && curl -sS -o /dev/null "$url?comp=list" 2>/dev/null; then
    say azurite "reusing 127.0.0.1:$port"
  else
    if port_open "$port"; then
      say azurite "FAILED: 127.0.0.1:$port is taken by something that does not answer like Azurite"
      exit 1
    fi
    if ! have npm; then
      apt_install azurite npm npm
    fi
    mkdir -p "$d/data"
    if [ ! -x "$d/node_modules/.bin/azurite-blob" ]; then
      npm install --silent --no-audit --no-fund --prefix "$d" azurite@3.35.0 >"$d/npm-install.log" 2>&1 || {
        say azurite "FAILED: npm install azurite@3.35.0 failed (log in $d/npm-install.log)"
        exit 1
      }
    fi
    start_bg azurite "$STATE/azurite.log" "$d/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 \
      --blobPort "$port" --location "$d/data" --skipApiVersionCheck --loose --silent
    wait_for azurite 60 port_open "$port"
    say azurite "started Azurite (blob) on 127.0.0.1:$port (data in $d/data, log in $STATE/azurite.log)"
  fi
  export_var MANIFOLD_TEST_AZURITE "$url"
}
azurite
