# shellcheck shell=bash
# @firestore-emulator/server 0.3.15 (npm; a third-party Firestore gRPC emulator: Google's own
# emulator jar cannot be installed here) on 127.0.0.1:8086, used by the firestore destination's
# tests. It implements Commit, BatchGetDocuments, RunQuery, BeginTransaction, Rollback,
# RunAggregationQuery and Listen; state is in memory only. The launcher binds loopback (the
# package's own `start(port)` binds 0.0.0.0).
# Sourced by scripts/services (helpers: say, start_bg, wait_for, port_open, export_var, …).
firestore_answers() { # port: a gRPC call gets a gRPC answer (any grpc-status) from the server
  curl -sS --http2-prior-knowledge -o /dev/null -D - -X POST \
    -H 'content-type: application/grpc' -H 'te: trailers' --data-binary '' \
    "http://127.0.0.1:$1/google.firestore.v1.Firestore/Rollback" 2>/dev/null | grep -qi '^grpc-status:'
}
firestore() {
  local port=8086 d="$STATE/firestore" version=0.3.15
  if port_open "$port" && firestore_answers "$port"; then
    say firestore "reusing 127.0.0.1:$port"
  else
    if port_open "$port"; then
      say firestore "FAILED: 127.0.0.1:$port is taken by something that does not answer like a gRPC server"
      exit 1
    fi
    if ! have npm; then
      apt_install firestore npm npm
    fi
    mkdir -p "$d"
    if [ ! -f "$d/node_modules/@firestore-emulator/server/package.json" ] \
       || ! grep -q "\"version\": \"$version\"" "$d/node_modules/@firestore-emulator/server/package.json"; then
      npm install --silent --no-audit --no-fund --prefix "$d" "@firestore-emulator/server@$version" \
        >"$d/npm-install.log" 2>&1 || {
        say firestore "FAILED: npm install @firestore-emulator/server@$version failed (log in $d/npm-install.log)"
        exit 1
      }
    fi
    cat >"$d/launch.js" <<'EOF'
const { FirestoreServer } = require("@firestore-emulator/server");
const { ServerCredentials } = require("@grpc/grpc-js");
const port = Number(process.argv[2] || 8080);
const fs = new FirestoreServer();
fs.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, p) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(`firestore-emulator listening on 127.0.0.1:${p}`);
});
process.on("SIGTERM", () => { fs.stop(); process.exit(0); });
EOF
    start_bg firestore "$STATE/firestore.log" node "$d/launch.js" "$port"
    wait_for firestore 60 firestore_answers "$port"
    say firestore "started @firestore-emulator/server $version on 127.0.0.1:$port (in memory, log in $STATE/firestore.log)"
  fi
  export_var MANIFOLD_TEST_FIRESTORE "127.0.0.1:$port"
}
firestore
