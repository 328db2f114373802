// Package packaging holds no code: it is the home of the Debian packaging
// (systemd units, maintainer scripts, the conffile, man page, changelog and
// build-deb.sh) and of the tests that build the .deb packages, inspect them
// with dpkg-deb, run the arm64 binary under qemu-user and install the amd64
// package into a fresh Debian chroot. Nothing imports it.
package packaging
