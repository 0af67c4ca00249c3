# Shared helpers for Fata's scripts (sourced, not run).

# Installs the Debian packages that provide the given commands, when any is missing.
# Usage: ensure_commands COMMAND:PACKAGE ...
ensure_commands() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "fata: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "fata: need root to install ${missing[*]}; install them and run again" >&2
    return 1
  fi
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Prints how many tests skipped and why, from the log the tests append to (FATA_SKIP_LOG, see
# crates/fata-testkit). Usage: report_skips LOG
report_skips() {
  local count
  count=$(grep -c '' "$1" 2>/dev/null) || count=0
  if [ "$count" -eq 0 ]; then
    echo "== no test skipped"
    return 0
  fi
  echo "== SKIPPED $count: tests (or parts of tests) that could not run here, and what they need:"
  cat "$1"
}

# Whether KVM can be used here; prints a loud SKIPPED line when not.
have_kvm() {
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    return 0
  fi
  echo "SKIPPED: /dev/kvm is missing or not accessible: $1"
  return 1
}
