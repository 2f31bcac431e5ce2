# Time-boxed steps for a one-call device script (sourced). Set R (log folder, created here) and BUDGET
# (seconds for the whole script) first; the clock starts at the source.
#   log MSG...           a line with the seconds since the start, into $R/main.log and stdout
#   left                 seconds of BUDGET left
#   step NAME NEED_S CMD...  runs CMD (output into main.log, capped at the time left) if NEED_S are left
mkdir -p "$R"
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
log() { echo "[+$(($(date +%s) - T0))s] $*" | tee -a "$R/main.log"; }
step() {
  local name=$1 need=$2
  shift 2
  if [ "$(left)" -lt "$need" ]; then
    log "SKIP $name (left $(left) s < $need s)"
    return 1
  fi
  log "RUN $name: $*"
  local s=$(date +%s)
  timeout "$(($(left) - 5))" "$@" >>"$R/main.log" 2>&1
  local rc=$?
  log "END $name rc=$rc $(($(date +%s) - s)) s"
  return $rc
}
