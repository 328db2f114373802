package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestManPage: the page lists every command of the usage with the flags
// its --help prints, and man(1) renders it.
func TestManPage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"man"}, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}); code != exitOK {
		t.Fatalf("man exited %d: %s", code, errb.String())
	}
	page := out.String()
	cmds := usageCommands(usage)
	if len(cmds) < 5 {
		t.Fatalf("usage lists %d commands: %v", len(cmds), cmds)
	}
	for _, c := range cmds {
		name := strings.ReplaceAll(strings.Join(c, " "), "-", `\-`)
		if !strings.Contains(page, name) {
			t.Errorf("page lacks command %q", name)
		}
	}
	for _, flag := range []string{`\-check\-config`, `\-data\-dir`, `\-role`, `\-force`} {
		if !strings.Contains(page, flag) {
			t.Errorf("page lacks flag %s", flag)
		}
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed (Debian man-db)")
	}
	cmd := exec.Command("man", "-l", "-")
	cmd.Stdin = strings.NewReader(page)
	cmd.Env = []string{"MANPAGER=cat", "PAGER=cat", "MANWIDTH=100", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
	rendered, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(rendered), "--check-config") || strings.Contains(string(rendered), "warning") {
		t.Fatalf("man -l: %v\n%s", err, rendered)
	}
}
