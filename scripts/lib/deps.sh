# Shared by scripts/test and scripts/demo: install what is missing on Debian 12 (apt-get),
# idempotent, and silent when everything is already present.

MGD_DEPS=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libgloo-dev
  libjpeg62-turbo-dev libpng-dev zlib1g-dev
  googletest libgtest-dev libcli11-dev libyaml-cpp-dev
  nlohmann-json3-dev  # COCO-format annotation files (src/data/coco.cpp), header-only
  python3-numpy python3-scipy python3-torch python3-torchvision python3-pil
  python3-matplotlib dataset-fashion-mnist  # scripts/study's report; its smoke test's data
)

mgd_install_deps() {
  local missing=() pkg
  for pkg in "${MGD_DEPS[@]}" "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "mgd: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Parallel build jobs: MGD_JOBS, else every core.
mgd_jobs() { echo "${MGD_JOBS:-$(nproc 2>/dev/null || echo 2)}"; }

# Configure (once) and build the given targets (all when none) in build directory $1.
mgd_build() {
  local dir=$1; shift
  local extra=()
  [ -n "${MGD_CMAKE_ARGS:-}" ] && read -r -a extra <<<"$MGD_CMAKE_ARGS"
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$MGD_ROOT" -B "$dir" -G Ninja "${extra[@]}" >/dev/null
  fi
  if [ $# -gt 0 ]; then
    local t args=()
    for t in "$@"; do args+=(--target "$t"); done
    cmake --build "$dir" -j "$(mgd_jobs)" "${args[@]}"
  else
    cmake --build "$dir" -j "$(mgd_jobs)"
  fi
}
