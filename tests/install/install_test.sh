#!/usr/bin/env bash
# mgd as a dependency (ctest: install): `cmake --install` of this build into a fresh prefix,
# then from that prefix alone: the CLI (`mgd --version`), a CMake project that
# find_package(mgd)s and runs one MGD step (tests/install/consumer), the same program built
# with pkg-config's flags, and the .deb that CPack makes (its files and declared Depends).
#   install_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$1 build=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

echo "== mgd --version from the prefix"
version=$("$prefix/bin/mgd" --version)
echo "$version"
grep -q "^mgd [0-9][0-9.]* (git " <<<"$version"
grep -q "^LibTorch [0-9]" <<<"$version"
grep -q "CUDA: " <<<"$version"
[ -f "$prefix/include/mgd/distiller/distiller.h" ]
[ -f "$prefix/lib/cmake/mgd/mgdConfig.cmake" ] && [ -f "$prefix/lib/cmake/mgd/mgdConfigVersion.cmake" ]

echo "== find_package(mgd)"
cmake -S "$src/tests/install/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >"$work/consumer-configure.log"
cmake --build "$work/consumer" -j "${MGD_JOBS:-2}" >"$work/consumer-build.log"
# mgd::mgd carries the solver and LibTorch: nothing else was named.
"$work/consumer/consumer" | tee "$work/consumer.out"
grep -q "^ok " "$work/consumer.out"

echo "== pkg-config"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists mgd
[ "$(pkg-config --modversion mgd)" = "$(sed -n 's/^mgd \([0-9.]*\) .*/\1/p' <<<"$version" | head -n 1)" ]
# shellcheck disable=SC2046
c++ -std=c++17 -O1 "$src/tests/install/consumer/main.cpp" -o "$work/pc_consumer" \
  $(pkg-config --cflags --libs mgd) -Wl,-rpath,"$prefix/lib"
"$work/pc_consumer" | grep "^ok "

echo "== cpack -G DEB"
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1)
deb=$(ls "$work"/mgd_*.deb)
dpkg-deb -c "$deb" >"$work/deb-contents.txt"
grep -q "\./usr/bin/mgd$" "$work/deb-contents.txt"
grep -q "\./usr/lib/libmgd\.so$" "$work/deb-contents.txt"
grep -q "\./usr/lib/cmake/mgd/mgdConfig\.cmake$" "$work/deb-contents.txt"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
grep -q "libtorch" <<<"$depends"
grep -q "libyaml-cpp" <<<"$depends"
echo "install test: ok"
