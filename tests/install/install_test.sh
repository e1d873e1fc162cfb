#!/usr/bin/env bash
# mgd as a dependency (ctest: install): `cmake --install` of this build into a fresh prefix,
# then from that prefix alone: the CLI (`mgd --version`), a CMake project that
# find_package(mgd)s and runs one MGD step (tests/install/consumer), the same program built
# with pkg-config's flags, and the .deb that CPack makes (its files and declared Depends).
#   install_test.sh SOURCE_DIR BUILD_DIR WORK_DIR LIBDIR TORCH_DIR
# (LIBDIR: CMAKE_INSTALL_LIBDIR; TORCH_DIR: the LibTorch's CMake directory. The .deb part runs
# where LibTorch is Debian's, under /usr, and dpkg-shlibdeps exists.)
set -euo pipefail
src=$1 build=$2 work=$3 libdir=$4 torch_dir=$5
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
# A failing step's log, not just its status.
trap 'status=$?; for f in "$work"/*.log; do echo "--- $f"; tail -n 40 "$f"; done; exit $status' ERR
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

echo "== mgd --version from the prefix"
version=$("$prefix/bin/mgd" --version)
echo "$version"
grep -q "^mgd [0-9][0-9.]* (git " <<<"$version"
grep -q "^LibTorch [0-9]" <<<"$version"
grep -q "CUDA: " <<<"$version"
[ -f "$prefix/include/mgd/distiller/distiller.h" ]
# The scripting tool beside the CLI (Debian's python3-torch runs it).
script_help=$("$prefix/bin/mgd-script" --help)
grep -q "TorchScript" <<<"$script_help"
[ -f "$prefix/$libdir/cmake/mgd/mgdConfig.cmake" ] && [ -f "$prefix/$libdir/cmake/mgd/mgdConfigVersion.cmake" ]

echo "== find_package(mgd)"
cmake -S "$src/tests/install/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DTorch_DIR="$torch_dir" >"$work/consumer-configure.log"
cmake --build "$work/consumer" -j "${MGD_JOBS:-2}" >"$work/consumer-build.log"
# mgd::mgd carries the solver and LibTorch: nothing else was named.
"$work/consumer/consumer" | tee "$work/consumer.out"
grep -q "^ok " "$work/consumer.out"

echo "== pkg-config"
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
pkg-config --exists mgd
[ "$(pkg-config --modversion mgd)" = "$(sed -n 's/^mgd \([0-9.]*\) .*/\1/p' <<<"$version" | head -n 1)" ]
# shellcheck disable=SC2046
c++ -std=c++17 -O1 "$src/tests/install/consumer/main.cpp" -o "$work/pc_consumer" \
  $(pkg-config --cflags --libs mgd) -Wl,-rpath,"$prefix/$libdir" 2>"$work/pc-build.log"
"$work/pc_consumer" | grep "^ok "

if [[ "$torch_dir" != /usr/* ]] || ! command -v dpkg-shlibdeps >/dev/null; then
  echo "install test: ok (no .deb: LibTorch is not Debian's, or dpkg-dev is missing)"
  exit 0
fi
echo "== cpack -G DEB"
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1)
deb=$(ls "$work"/mgd_*.deb)
dpkg-deb -c "$deb" >"$work/deb-contents.txt"
grep -q "\./usr/bin/mgd$" "$work/deb-contents.txt"
grep -q "\./usr/bin/mgd-script$" "$work/deb-contents.txt"
grep -q "\./usr/$libdir/libmgd\.so$" "$work/deb-contents.txt"
grep -q "\./usr/$libdir/cmake/mgd/mgdConfig\.cmake$" "$work/deb-contents.txt"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
grep -q "libtorch" <<<"$depends"
grep -q "libyaml-cpp" <<<"$depends"
echo "install test: ok"
