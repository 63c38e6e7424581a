# shellcheck shell=bash
# nx-27017 (PyPI): a MongoDB wire-protocol server in Python (SQLite storage), on 127.0.0.1:27018,
# used by the mongo destination's tests. It is a reimplementation, not mongod (none is installable
# here). Sourced by scripts/services (helpers: say, pip_venv, start_bg, wait_for, export_var, …).
mongo_ping() { # venv, port
  "$1/bin/python" - "$2" <<'PY' >/dev/null 2>&1
import sys, pymongo
c = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true",
                        serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
c.admin.command("ping")
PY
}
mongo() {
  local port=27018 v d="$STATE/mongo"
  v=$(pip_venv mongo 'nx-27017==0.8.*' 'pymongo>=4,<5')
  if port_open "$port" && mongo_ping "$v" "$port"; then
    say mongo "reusing 127.0.0.1:$port"
  else
    if port_open "$port"; then
      say mongo "FAILED: 127.0.0.1:$port is taken by something that does not answer a MongoDB ping"
      exit 1
    fi
    mkdir -p "$d"
    # In memory: test databases never pile up across runs (the tests drop theirs anyway).
    start_bg mongo "$d/stdout.log" "$v/bin/nx-27017" --data-dir memory --host 127.0.0.1 -p "$port" \
      --log-file "$d/nx.log" --pid-file "$d/nx.pid"
    wait_for mongo 30 mongo_ping "$v" "$port"
    say mongo "started nx-27017 (MongoDB wire protocol) on 127.0.0.1:$port (log in $d/nx.log)"
  fi
  export_var MANIFOLD_TEST_MONGO "mongodb://127.0.0.1:$port/?directConnection=true"
}
mongo
