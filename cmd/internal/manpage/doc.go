// Package manpage renders a command's own help text as a manual page in
// man(7) roff, so that the page the .deb ships says exactly what the binary
// says and cannot drift from it: the binaries print their page with a hidden
// `man` command and packaging/build-deb.sh installs that output.
//
// It owns only the rendering; the words come from the commands.
package manpage
