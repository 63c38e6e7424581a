# shellcheck shell=bash
# moto_server (PyPI `moto[server]`): an S3 + SQS reimplementation on 127.0.0.1:4566, used by the
# s3 and sqs destinations' tests. Sourced by scripts/services (helpers: say, pip_venv, start_bg, …).
moto() {
  local port=4566 v
  if port_open "$port" && curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then
    say moto "reusing 127.0.0.1:$port"
  else
    if port_open "$port"; then
      say moto "FAILED: 127.0.0.1:$port is taken by something that is not moto_server"
      exit 1
    fi
    v=$(pip_venv moto 'moto[server]>=5,<6')
    start_bg moto "$STATE/moto.log" "$v/bin/moto_server" -H 127.0.0.1 -p "$port"
    wait_for moto 60 curl -fsS "http://127.0.0.1:$port/moto-api/"
    say moto "started moto_server (S3 + SQS) on 127.0.0.1:$port (log in $STATE/moto.log)"
  fi
  export_var MANIFOLD_TEST_AWS_ENDPOINT "http://127.0.0.1:$port"
}
moto
