#!/usr/bin/env bash
# Build flite's command-line program as a WASI command module, reproducibly.
#
#   wasm_bin/build.sh [OUTDIR]      writes OUTDIR/flite.wasm (default: wasm_bin/)
#                                   and prints its sha256 (progress goes to stderr)
#
# Source: Debian's flite 2.2 (orig tarball via `apt-get source`, checked against
# the sha256 pinned below and the one in Debian's .dsc). Toolchain: Debian's
# clang-14, lld-14, llvm-14 (llvm-ar), wasi-libc and libclang-rt-14-dev-wasm32,
# at the versions pinned in scripts/setup.sh. With those, the output is
# bit-for-bit the same wherever it is built; compare with wasm_bin/flite.wasm.sha256.
#
# Environment:
#   FLITE_ORIG_TARBALL=path   use this flite_2.2.orig.tar.gz instead of apt-get source
#   KEEP_BUILD=1              keep the temporary build directory (its path is printed)
#   JOBS=n                    parallel make jobs (default: number of cores)
#
# Needs root only to enable Debian source entries for apt when none are enabled.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUTDIR=${1:-$HERE}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

FLITE_SRC_VERSION=2.2-5
ORIG_NAME=flite_2.2.orig.tar.gz
ORIG_SHA256=ab1555fe5adc3f99f1d4a1a0eb1596d329fd6d74f1464a0097c81f53c0cf9e5c
# Voices in the same relative order as Debian's flite, so the default voice
# (the first, kal) and `flite -lv` match it.
VOXES="cmu_us_kal cmu_us_kal16 cmu_us_awb cmu_us_rms cmu_us_slt"
# Toolchain versions the pinned sha256 was produced with (as in scripts/setup.sh).
PINS="clang-14=1:14.0.6-12 lld-14=1:14.0.6-12 llvm-14=1:14.0.6-12
      wasi-libc=0.0~git20220510.9886d3d-2 libclang-rt-14-dev-wasm32=1:14.0.6-12"
# Fixed timestamps: nothing in flite embeds dates today, but tools that honour
# this stay deterministic if that changes.
export SOURCE_DATE_EPOCH=1666520000
export LC_ALL=C TZ=UTC
umask 022

die() { echo "build.sh: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

for tool in clang-14 wasm-ld-14 llvm-ar-14 llvm-ranlib-14 sha256sum tar make patch; do
  command -v "$tool" >/dev/null || die "missing $tool (run: scripts/setup.sh --dev)"
done
[ -f /usr/include/wasm32-wasi/stdio.h ] || die "missing wasi-libc headers (run: scripts/setup.sh --dev)"
[ -f /usr/lib/wasm32-wasi/libc.a ] || die "missing wasi-libc (run: scripts/setup.sh --dev)"
[ -f /usr/share/misc/config.sub ] || die "missing autotools-dev (run: scripts/setup.sh --dev)"
for pin in $PINS; do
  have=$(dpkg-query -W -f='${Version}' "${pin%%=*}" 2>/dev/null || true)
  [ "$have" = "${pin#*=}" ] || log "warning: ${pin%%=*} is '${have:-absent}', pinned ${pin#*=}; the result may not match the pinned sha256"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flite-wasm.XXXXXX")
if [ "${KEEP_BUILD:-0}" = 1 ]; then
  log "keeping build directory $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi
chmod 755 "$WORK"

# --- source -------------------------------------------------------------------

# Debian source entries are off by default; turn on the existing Debian ones
# (same mirrors, suites and keys) rather than naming any host ourselves. Only
# Debian's own entries: third-party repositories may publish no sources.
DEBIAN_URI='/debian(-security|-ports)?/?([[:space:]]|$)'
enable_deb_src() {
  [ "$(id -u)" = 0 ] || die "no deb-src entries enabled for apt and not root; enable them or set FLITE_ORIG_TARBALL"
  local f line changed=0
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: add deb-src to the Types of stanzas that are Debian's.
    awk -v uri="$DEBIAN_URI" '
      function flush(  i, l) {
        for (i = 1; i <= n; i++) {
          l = buf[i]
          if (deb && l ~ /^Types:[[:space:]]*deb[[:space:]]*$/) l = "Types: deb deb-src"
          print l
        }
        n = 0; deb = 0
      }
      /^[[:space:]]*$/ { flush(); print; next }
      { buf[++n] = $0
        if ($0 ~ /debian-archive-keyring/ || ($0 ~ /^URIs:/ && $0 ~ uri)) deb = 1 }
      END { flush() }' "$f" >"$WORK/sources.new"
    if ! cmp -s "$f" "$WORK/sources.new"; then
      cat "$WORK/sources.new" >"$f"
      changed=1
    fi
  done
  if [ -f /etc/apt/sources.list ]; then
    while IFS= read -r line; do
      grep -qxF "deb-src${line#deb}" /etc/apt/sources.list && continue
      echo "deb-src${line#deb}" >>/etc/apt/sources.list
      changed=1
    done < <(grep -E '^deb[[:space:]]' /etc/apt/sources.list | grep -E "$DEBIAN_URI" || true)
  fi
  [ "$changed" = 1 ] || die "found no Debian 'deb' entries to add 'deb-src' to"
  log "enabled deb-src entries for Debian's repositories; running apt-get update"
  apt-get update -qq
}

have_source() { apt-cache showsrc flite 2>/dev/null | grep -qx "Version: $FLITE_SRC_VERSION"; }

mkdir -p "$WORK/src"
# Let apt download as its unprivileged user, as it prefers.
[ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1 && chown _apt "$WORK/src"
if [ -n "${FLITE_ORIG_TARBALL:-}" ]; then
  cp "$FLITE_ORIG_TARBALL" "$WORK/src/$ORIG_NAME"
else
  have_source || { apt-get update -qq || true; have_source; } || { enable_deb_src; have_source; } \
    || die "apt knows no source package flite=$FLITE_SRC_VERSION"
  (cd "$WORK/src" &&
   apt-get source -qq --download-only --dsc-only "flite=$FLITE_SRC_VERSION" &&
   apt-get source -qq --download-only --tar-only "flite=$FLITE_SRC_VERSION") >&2 \
    || die "apt-get source flite=$FLITE_SRC_VERSION failed"
  dsc_sha=$(awk -v f="$ORIG_NAME" '/^Checksums-Sha256:/{s=1;next} /^[^ ]/{s=0} s && $3==f {print $1}' \
            "$WORK/src/flite_${FLITE_SRC_VERSION}.dsc")
  [ "$dsc_sha" = "$ORIG_SHA256" ] || die "the .dsc lists sha256 '$dsc_sha' for $ORIG_NAME, expected $ORIG_SHA256"
fi
got=$(sha256sum "$WORK/src/$ORIG_NAME" | cut -d' ' -f1)
[ "$got" = "$ORIG_SHA256" ] || die "$ORIG_NAME has sha256 $got, expected $ORIG_SHA256"
log "source $ORIG_NAME verified (sha256 $got)"

tar -xzf "$WORK/src/$ORIG_NAME" -C "$WORK"
SRC=$WORK/flite-2.2
[ -f "$SRC/main/flite_main.c" ] || die "unexpected tarball layout"

# flite 2.2's config.sub predates wasm32-wasi.
cp /usr/share/misc/config.sub /usr/share/misc/config.guess "$SRC/"

# Our selection of languages, lexicons and voices (flite's --with-langvox=NAME
# reads config/NAME.lv).
cat >"$SRC/config/gflite_wasm.lv" <<EOF
LEXES += cmulex
LANGS += usenglish
VOXES += $VOXES
EOF

# Patches (wasm_bin/patches/, applied in name order): speed patches that keep
# flite's arithmetic and its order exactly, and fixes that make flite.wasm do
# what Debian's gcc-built flite does (argument evaluation order, call-stack
# depth). The audio stays bit-identical to native flite (tests/test_flitewasm.py
# checks every voice and a token corpus); see wasm_bin/README.md.
for p in "$HERE"/patches/*.patch; do
  patch -d "$SRC" -p1 --forward --fuzz=0 --no-backup-if-mismatch -s <"$p" >&2 \
    || die "patch $(basename "$p") does not apply"
done

# One fix to flite's own code: main/flite_main.c declares
# flite_set_lang_list() as returning void *, but the generated definition
# returns void; wasm-ld then links a signature-mismatch stub that traps at start.
sed -i 's|^void \*flite_set_lang_list(void);$|void flite_set_lang_list(void); /* gflite: was "void *", fixed to match the generated definition */|' \
  "$SRC/main/flite_main.c"
grep -q '^void flite_set_lang_list(void); /\* gflite' "$SRC/main/flite_main.c" \
  || die "could not fix the flite_set_lang_list prototype"

# --- toolchain ---------------------------------------------------------------

# A sysroot holding only wasi-libc, so clang cannot pick up the host's headers.
SYSROOT=$WORK/sysroot
mkdir -p "$SYSROOT/include" "$SYSROOT/lib"
cp -r /usr/include/wasm32-wasi "$SYSROOT/include/wasm32-wasi"
cp -r /usr/lib/wasm32-wasi "$SYSROOT/lib/wasm32-wasi"
mkdir -p "$WORK/shim"
cp "$HERE/include/setjmp.h" "$WORK/shim/"
cp "$HERE/glibc_rand.c" "$HERE/wave_append.c" "$HERE/timings.c" "$WORK/"

CC="clang-14 --target=wasm32-wasi --sysroot=$SYSROOT"
# -DCST_NO_SOCKETS: configure's --disable-sockets never reaches the Makefiles.
# -ffile-prefix-map: keep the build directory's name out of the output.
CFLAGS="-O2 -msimd128 -DCST_NO_SOCKETS -I$WORK/shim -ffile-prefix-map=$WORK=."
$CC $CFLAGS -Wall -Wextra -c "$WORK/glibc_rand.c" -o "$WORK/glibc_rand.o"
# --stack-first: wasm-ld's default stack sits above the data, so an overflow
# would silently corrupt it; below it, an overflow traps. flite needs > 64 KiB.
# glibc_rand.o replaces wasi-libc's rand() so the audio matches native flite.
LDFLAGS="-Wl,--stack-first -Wl,-z,stack-size=1048576 -Wl,--strip-debug $WORK/glibc_rand.o"

# --- build -------------------------------------------------------------------

cd "$SRC"
log "configuring"
./configure --host=wasm32-wasi --build="$(./config.guess)" \
  --with-audio=none --with-mmap=none --disable-shared --disable-sockets \
  --with-langvox=gflite_wasm \
  CC="$CC" CFLAGS="$CFLAGS" LDFLAGS="$LDFLAGS" \
  AR=llvm-ar-14 RANLIB=llvm-ranlib-14 >"$WORK/configure.log" 2>&1 \
  || { tail -30 "$WORK/configure.log" >&2; die "configure failed (log above)"; }

# wave_append.c keeps flite's output WAV open between utterances (see its
# comment). It needs flite's headers and calls flite itself, so it joins the
# link only now: configure's own test programs could not link with it.
# timings.c writes word timings beside the audio when asked (--sets
# timings_file=NAME); flite_process_output calls it (patches/07-timings-hook.patch).
$CC $CFLAGS -I"$SRC/include" -Wall -Wextra -c "$WORK/wave_append.c" -o "$WORK/wave_append.o"
$CC $CFLAGS -I"$SRC/include" -Wall -Wextra -c "$WORK/timings.c" -o "$WORK/timings.o"
WRAP="$WORK/wave_append.o $WORK/timings.o -Wl,--wrap=cst_wave_append_riff -Wl,--wrap=cst_wave_save_riff"
sed -i "s|^LDFLAGS *=.*|& $WRAP|" config/config
grep -q -- "--wrap=cst_wave_append_riff" config/config || die "could not add wave_append.o to the link"

log "compiling"
JOBS=${JOBS:-$(nproc)}
{ make -j"$JOBS" -C include && make -j"$JOBS" -C src && make -j"$JOBS" -C lang && make -C main ../bin/flite; } \
  >"$WORK/make.log" 2>&1 || { tail -40 "$WORK/make.log" >&2; die "make failed (log above)"; }

BIN=$SRC/bin/flite
[ -f "$BIN" ] || die "the build produced no flite binary"
head -c 4 "$BIN" | od -An -tx1 | grep -q '00 61 73 6d' || die "$BIN is not a wasm module"

cp "$BIN" "$OUTDIR/flite.wasm.tmp"
mv "$OUTDIR/flite.wasm.tmp" "$OUTDIR/flite.wasm"
log "wrote $OUTDIR/flite.wasm ($(stat -c %s "$OUTDIR/flite.wasm") bytes)"
sha256sum "$OUTDIR/flite.wasm" | cut -d' ' -f1
