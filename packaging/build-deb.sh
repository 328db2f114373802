#!/usr/bin/env bash
# build-deb.sh VERSION — build the amd64 and arm64 .deb packages into dist/.
#
# The arm64 binary is cross-compiled with cgo (SQLite) by Debian's
# gcc-aarch64-linux-gnu. Environment:
#   ARCHES                    architectures to build (default "amd64 arm64")
#   DIST                      output directory (default dist)
#   FLOWNEXUS_UPDATE_PUBKEY   minisign public key for self-update
#                             (default packaging/update.pub)
set -euo pipefail
cd "$(dirname "$0")/.."

raw=${1:?usage: packaging/build-deb.sh VERSION}
# A Debian version from a git describe: drop a leading v, turn the
# "-N-gHASH[-dirty]" suffix into "+N-gHASH" style without hyphens (a hyphen
# would start a Debian revision), and prefix a bare commit hash.
version=${raw#v}
version=${version//-/+}
case $version in
[0-9]*) ;;
*) version="0.0.0+git${version}" ;;
esac
if ! printf '%s' "$version" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$'; then
	echo "build-deb.sh: cannot make a Debian version of '$raw'" >&2
	exit 2
fi

dist=${DIST:-dist}
build="$dist/build"
pubkey=${FLOWNEXUS_UPDATE_PUBKEY:-packaging/update.pub}
pkg=github.com/flownexus/flownexus
go=${GO:-go}

rm -rf "$build"
mkdir -p "$build"
# The manual pages come from the binaries' own help (their hidden `man`
# command), built for this host, so they say what the programs say.
"$go" run ./cmd/flownexus man | gzip -9n >"$build/flownexus.1.gz"
"$go" run ./cmd/flownexus-sim man | gzip -9n >"$build/flownexus-sim.1.gz"
gzip -9n <packaging/changelog >"$build/changelog.gz"
cp "$pubkey" "$build/update.pub"

for arch in ${ARCHES:-amd64 arm64}; do
	case $arch in
	amd64) cc=${CC_AMD64:-x86_64-linux-gnu-gcc} ;;
	arm64) cc=${CC_ARM64:-aarch64-linux-gnu-gcc} ;;
	*)
		echo "build-deb.sh: unsupported architecture $arch" >&2
		exit 2
		;;
	esac
	if [ "$arch" = amd64 ] && ! command -v "$cc" >/dev/null && [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ]; then
		cc=gcc
	fi
	if ! command -v "$cc" >/dev/null; then
		echo "build-deb.sh: $cc not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" >&2
		exit 1
	fi
	echo "== flownexus $version $arch (CC=$cc)"
	mkdir -p "$build/$arch"
	CGO_ENABLED=1 GOOS=linux GOARCH=$arch CC=$cc \
		"$go" build -trimpath -ldflags "-s -w -X $pkg/appliance.Version=$version" \
		-o "$build/$arch/flownexus" ./cmd/flownexus
	CGO_ENABLED=1 GOOS=linux GOARCH=$arch CC=$cc \
		"$go" build -trimpath -ldflags "-s -w" \
		-o "$build/$arch/flownexus-sim" ./cmd/flownexus-sim
	ARCH=$arch VERSION=$version BUILD=$build \
		"$go" tool nfpm package --config nfpm.yaml --packager deb --target "$dist/"
done
ls -l "$dist"/*.deb
