# shellcheck shell=bash
# Chromium (Debian's `chromium` package), driven headless by the dashboard's browser test
# (crates/manifold/tests/ui_browser.rs) to prove /ui renders delivery rows from a running server.
# Not a server: nothing is started. Tests find the binary in $MANIFOLD_TEST_CHROMIUM.
# Sourced by scripts/services (helpers: say, apt_install, export_var, have, …).
chromium_browser() {
  local bin
  bin=$(command -v chromium || command -v chromium-browser || true)
  if [ -z "$bin" ]; then
    apt_install chromium chromium chromium
    bin=$(command -v chromium || true)
  fi
  if [ -z "$bin" ] || ! "$bin" --headless --no-sandbox --version >/dev/null 2>&1; then
    say chromium "FAILED: chromium is not installed or does not start (apt-get install chromium)"
    exit 1
  fi
  say chromium "$("$bin" --version 2>/dev/null | head -n1) at $bin"
  export_var MANIFOLD_TEST_CHROMIUM "$bin"
}
chromium_browser
