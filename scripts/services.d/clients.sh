# shellcheck shell=bash
# Independent clients the proof tests read data back with: the databases' own CLIs (psql and
# mariadb come with their servers; sqlite3 is installed here) and one Python venv with the vendors'
# SDKs (boto3, google-cloud-storage, azure-storage-blob, confluent-kafka, pymongo,
# google-cloud-firestore). Tests find the interpreter in $MANIFOLD_TEST_PYTHON.
# Sourced by scripts/services (helpers: say, pip_venv, apt_install, export_var, …).
clients() {
  local v
  if ! have sqlite3; then
    apt_install clients sqlite3 sqlite3
  fi
  local pkgs=('boto3==1.44.*' 'google-cloud-storage==3.*' 'azure-storage-blob==12.*'
    'confluent-kafka==2.*' 'pymongo==4.*' 'google-cloud-firestore==2.*')
  if ! v=$(pip_venv clients "${pkgs[@]}"); then
    say clients "FAILED: pip could not install the Python client SDKs into $STATE/venv-clients"
    exit 1
  fi
  say clients "sqlite3 $(sqlite3 --version | cut -d' ' -f1); Python SDKs in $v"
  export_var MANIFOLD_TEST_PYTHON "$v/bin/python"
}
clients
