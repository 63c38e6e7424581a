# shellcheck shell=bash
# postrust (crates.io `postrust-server`): a PostgREST-compatible REST server (a reimplementation;
# the real PostgREST is in no reachable registry) on 127.0.0.1:3000, in front of the PostgreSQL
# that scripts/services already started, used by the supabase destination's tests. It serves the
# REST API under /api (PostgREST serves it at /, Supabase at /rest/v1).
# Sourced by scripts/services (helpers: say, start_bg, wait_for, export_var, have, …).
postrust_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$1/api/" 2>/dev/null || curl -fsS -o /dev/null "http://127.0.0.1:$1/_/health" 2>/dev/null; }
postrust() {
  local port=3000 bin="$STATE/postrust/bin/postrust" d="$STATE/postrust" pg db_url auth_url secret key
  local jwt_secret="manifold-local-postrust-jwt-secret-not-for-production"
  # The PostgreSQL admin URL the main script exported a moment ago (in the env file being written).
  pg=$(sed -n 's/^export MANIFOLD_TEST_POSTGRES=//p' "${ENV_TMP:-$ENV_FILE.tmp}" 2>/dev/null | tail -n1)
  pg=${pg:-${MANIFOLD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}}
  db_url="${pg%/*}/manifold_supabase"
  # authenticator logs in with a password; the local cluster trusts 127.0.0.1 anyway.
  auth_url=$(printf '%s' "$db_url" | sed -E 's#^postgres(ql)?://[^@/]*@#postgres://authenticator:authpass@#')

  if ! have psql; then
    say postrust "FAILED: psql is missing (apt-get install postgresql-client) and is needed to set up the roles"
    exit 1
  fi
  # Roles like Supabase's: an anonymous role without table grants, service_role (what the
  # service-role key's JWT names; bypasses RLS like on Supabase), and the login role postrust uses.
  local -x PGOPTIONS="-c client_min_messages=warning"
  psql "$pg" -v ON_ERROR_STOP=1 -qtA >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'web_anon') THEN CREATE ROLE web_anon NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN BYPASSRLS; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'authpass';
  END IF;
END $$;
GRANT web_anon TO authenticator;
GRANT service_role TO authenticator;
SQL
  if [ "$(psql "$pg" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'manifold_supabase'")" != 1 ]; then
    psql "$pg" -qtAc "CREATE DATABASE manifold_supabase" >/dev/null 2>&1 \
      || [ "$(psql "$pg" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'manifold_supabase'")" = 1 ]
  fi
  psql "$db_url" -v ON_ERROR_STOP=1 -qtA >/dev/null <<'SQL'
CREATE SCHEMA IF NOT EXISTS api;
GRANT USAGE ON SCHEMA api TO web_anon, service_role;
SQL

  if port_open "$port" && postrust_ready "$port"; then
    say postrust "reusing 127.0.0.1:$port"
  else
    if port_open "$port"; then
      say postrust "FAILED: 127.0.0.1:$port is taken by something that is not postrust"
      exit 1
    fi
    if [ ! -x "$bin" ]; then
      if ! have cargo; then
        say postrust "FAILED: cargo is needed to build postrust-server (install Rust from rustup.rs)"
        exit 1
      fi
      say postrust "compiling postrust-server from crates.io (about 12 minutes, once; log in $d-install.log)"
      mkdir -p "$d"
      # --locked first (the versions the author tested); the lock file once pinned a yanked
      # crate, so fall back to a fresh resolution.
      if ! cargo install postrust-server --locked --root "$d" >"$d-install.log" 2>&1; then
        cargo install postrust-server --root "$d" >>"$d-install.log" 2>&1 || {
          say postrust "FAILED: cargo install postrust-server failed (log in $d-install.log)"
          exit 1
        }
      fi
    fi
    start_bg postrust "$d/postrust.log" env \
      PGRST_DB_URI="$auth_url" PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=web_anon \
      PGRST_JWT_SECRET="$jwt_secret" PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$port" \
      PGRST_DB_CHANNEL_ENABLED=true "$bin"
    wait_for postrust 60 postrust_ready "$port"
    say postrust "started postrust (PostgREST API under /api) on 127.0.0.1:$port (log in $d/postrust.log)"
  fi
  # A Supabase-style service-role key (HS256 JWT, role service_role) for the local server.
  key=$(python3 - "$jwt_secret" <<'PY'
import base64, hashlib, hmac, json, sys
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
p = b(json.dumps({"role": "service_role", "iss": "manifold-local"}, separators=(",", ":")).encode())
s = b(hmac.new(sys.argv[1].encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
PY
)
  export_var MANIFOLD_TEST_POSTGREST "http://127.0.0.1:$port/api"
  export_var MANIFOLD_TEST_POSTGREST_DB "$db_url"
  export_var MANIFOLD_TEST_POSTGREST_JWT_SECRET "$jwt_secret"
  export_var MANIFOLD_TEST_POSTGREST_SERVICE_KEY "$key"
}
postrust
