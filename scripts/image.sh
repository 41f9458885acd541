#!/usr/bin/env bash
# Builds the xlb agent image (`make image`) with buildah or podman from
# deploy/Containerfile.
#
# Local build (the default): no registry needed. The two base layers of the
# Containerfile are assembled from Debian's packages with mmdebstrap and
# imported into the local container storage, then passed as build arguments:
#   build root   (BUILD_BASE)   dash + coreutils: installs the prebuilt binary
#   runtime root (RUNTIME_BASE) libc6 + libgcc-s1 + the CA bundle of
#                               ca-certificates: no shell, no package manager
# The binary is the one built on the host (--binary, default
# target/release/xlb), given to the build stage as XLB_PREBUILT.
# The root tarballs are cached under target/image/ (delete them to rebuild).
#
# Registry build (--registry): the Containerfile as written, two stages
# pulled from registries (Rust toolchain image, distroless cc).
#
# Usage: scripts/image.sh [--binary PATH] [--tag TAG] [--registry]
# Environment: XLB_IMAGE_TOOL=buildah|podman (default: buildah if it runs),
#              XLB_IMAGE_SUITE (default bookworm), XLB_IMAGE_CACHE (target/image).
set -euo pipefail
shopt -s inherit_errexit

BINARY=
TAG=
MODE=local
while [ $# -gt 0 ]; do
	case "$1" in
	--binary) BINARY=$2; shift 2 ;;
	--tag) TAG=$2; shift 2 ;;
	--registry) MODE=registry; shift ;;
	*) echo "usage: $0 [--binary PATH] [--tag TAG] [--registry]" >&2; exit 2 ;;
	esac
done
SHOWN=${BINARY:-target/release/xlb}
[ -z "$BINARY" ] || BINARY=$(realpath -m -- "$BINARY")
cd "$(dirname "$0")/.."
BINARY=${BINARY:-target/release/xlb}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TAG=${TAG:-ghcr.io/xlb/xlb:$VERSION}
SUITE=${XLB_IMAGE_SUITE:-bookworm}
CACHE=${XLB_IMAGE_CACHE:-target/image}

# Runtime flags this kind of VM needs: runc (crun refuses hybrid cgroups),
# explicit ulimits (the defaults are refused), the host network for RUN steps.
RUN_FLAGS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network host)

tool=${XLB_IMAGE_TOOL:-}
if [ -z "$tool" ]; then
	for t in buildah podman; do
		if command -v "$t" >/dev/null && "$t" images >/dev/null 2>&1; then tool=$t; break; fi
	done
fi
[ -n "$tool" ] || { echo "neither buildah nor podman runs here (make image installs them)" >&2; exit 1; }

if [ "$MODE" = registry ]; then
	echo "== $tool build (registry bases, two stages) -> $TAG"
	exec "$tool" build "${RUN_FLAGS[@]}" -f deploy/Containerfile -t "$TAG" .
fi

[ "$(id -u)" = 0 ] || { echo "the local build needs root (mmdebstrap, container storage)" >&2; exit 1; }
[ -x "$BINARY" ] || { echo "no xlb binary at $SHOWN (cargo build --release)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing (make image installs it)" >&2; exit 1; }
mkdir -p "$CACHE"

# Files an extracted root does not need at run time: package manager state,
# documentation, iconv modules, and the host files mmdebstrap copies in.
PRUNE=(etc/apt etc/dpkg var/lib/apt var/cache/apt var/lib/dpkg var/log/apt
	usr/share/doc usr/share/lintian usr/share/man usr/share/info usr/share/locale
	usr/lib/x86_64-linux-gnu/gconv usr/lib/aarch64-linux-gnu/gconv
	etc/resolv.conf etc/hostname etc/fstab)

# root_tar NAME INCLUDE [HOOK...]: $CACHE/NAME-$SUITE.tar, extracted once by
# mmdebstrap from Debian's packages and pruned.
root_tar() {
	local name=$1 include=$2 tar="$CACHE/$1-$SUITE.tar" dir
	shift 2
	if [ ! -s "$tar" ]; then
		echo "== mmdebstrap $name root ($include) -> $tar" >&2
		dir=$(mktemp -d "$CACHE/.$name.XXXXXX")
		mmdebstrap --quiet --variant=extract --format=directory --include="$include" "$@" \
			"$SUITE" "$dir" >&2
		(cd "$dir" && rm -rf "${PRUNE[@]}")
		tar --numeric-owner -C "$dir" -cf "$dir.tar" .
		rm -rf "$dir"
		mv "$dir.tar" "$tar"
	fi
	echo "$tar"
}

# image_id IMAGE: the local image's full id, empty when there is none.
image_id() {
	if [ "$tool" = podman ]; then
		podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true
	else
		buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true
	fi
}

# import TAR IMAGE: imports TAR as IMAGE unless IMAGE is what the last import
# of this TAR made (TAR.imported holds that image's id).
import() {
	local tar=$1 image=$2 stamp="$1.imported" id
	id=$(image_id "$image")
	if [ -n "$id" ] && [ "$stamp" -nt "$tar" ] && [ "$(cat "$stamp")" = "$id" ]; then
		return
	fi
	echo "== import $tar as $image"
	if [ "$tool" = podman ]; then
		podman import --quiet "$tar" "$image" >/dev/null
	else
		local c
		c=$(buildah from scratch)
		buildah add --quiet "$c" "$tar" / >/dev/null
		buildah commit --quiet "$c" "$image" >/dev/null
		buildah rm "$c" >/dev/null
	fi
	image_id "$image" > "$stamp"
}

# /etc/ssl/certs/ca-certificates.crt from the ca-certificates package (what
# update-ca-certificates concatenates), without the package's openssl/perl.
CA_HOOK='set -e; d=$(mktemp -d); chmod 755 "$d"; cd "$d"; \
	APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -qq -o APT::Sandbox::User=root ca-certificates; \
	dpkg-deb -x ca-certificates_*.deb x; \
	mkdir -p "$1/etc/ssl/certs"; \
	cat x/usr/share/ca-certificates/mozilla/*.crt > "$1/etc/ssl/certs/ca-certificates.crt"; \
	cd /; rm -rf "$d"'

PASSWD='printf "root:x:0:0:root:/root:/nonexistent\n" > "$1/etc/passwd"; \
	printf "root:x:0:\n" > "$1/etc/group"'

build_tar=$(root_tar build-root dash,coreutils)
runtime_tar=$(root_tar runtime-root libc6,libgcc-s1 \
	--extract-hook="$CA_HOOK" --extract-hook="$PASSWD")
BUILD_BASE=localhost/xlb-build-root:$SUITE
RUNTIME_BASE=localhost/xlb-runtime-root:$SUITE
import "$build_tar" "$BUILD_BASE"
import "$runtime_tar" "$RUNTIME_BASE"

# The build context: the binary alone, without debug sections (a debug build
# carries ~180 MB of them), symbols kept for backtraces. (The repository's
# .dockerignore keeps target/ out of the registry build's context.)
ctx=$(mktemp -d "$CACHE/.context.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
strip --strip-debug -o "$ctx/xlb" "$BINARY"

echo "== $tool build (local bases, prebuilt $SHOWN) -> $TAG"
"$tool" build "${RUN_FLAGS[@]}" --pull=never \
	--build-arg BUILD_BASE="$BUILD_BASE" \
	--build-arg RUNTIME_BASE="$RUNTIME_BASE" \
	--build-arg XLB_PREBUILT=xlb \
	-f deploy/Containerfile -t "$TAG" "$ctx"

if command -v podman >/dev/null; then
	size=$(podman image inspect --format '{{.Size}}' "$TAG")
	echo "== $TAG: $((size / 1000 / 1000)) MB"
fi
