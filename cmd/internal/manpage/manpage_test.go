package manpage

import (
	"os/exec"
	"strings"
	"testing"
)

func TestRenderEscapes(t *testing.T) {
	var b strings.Builder
	p := Page{
		Name: "demo", Section: 1, Summary: "a demo-tool", Source: "demo 1.0",
		Synopsis: "usage: demo [--flag] C:\\path\n.starts with a dot",
		Sections: []Section{{Title: "Options", Entries: []Entry{
			{Term: "--x", Body: "  -x int\n\tthe x (default 1)", Preformatted: true},
			{Term: "FILE", Body: "'quoted first"},
		}}},
	}
	if err := p.Render(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		`.TH DEMO 1 "" "demo 1.0" "User Commands"`,
		`demo \- a demo\-tool`,
		`usage: demo [\-\-flag] C:\epath`,
		`\&.starts with a dot`,
		".SS \\-\\-x\n.nf\n  \\-x int\n        the x (default 1)\n.fi",
		`\&'quoted first`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q:\n%s", want, got)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, ".") && !strings.HasPrefix(l, `.TH`) && !strings.HasPrefix(l, ".SH") && !strings.HasPrefix(l, ".SS") &&
			!strings.HasPrefix(l, ".nf") && !strings.HasPrefix(l, ".fi") && !strings.HasPrefix(l, ".TP") && !strings.HasPrefix(l, ".B ") && !strings.HasPrefix(l, ".PP") {
			t.Errorf("stray request line %q", l)
		}
	}
}

// TestRendersWithMan feeds a page to man(1) as the packaged one will be.
func TestRendersWithMan(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed (Debian man-db)")
	}
	var b strings.Builder
	Page{Name: "demo", Section: 1, Summary: "a demo", Source: "demo 1.0", Synopsis: "usage: demo --x N",
		Description: []string{"Demo does things."}}.Render(&b)
	cmd := exec.Command("man", "-l", "-")
	cmd.Stdin = strings.NewReader(b.String())
	cmd.Env = []string{"MANPAGER=cat", "PAGER=cat", "MANWIDTH=80", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man -l: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "usage: demo --x N") || !strings.Contains(string(out), "Demo does things.") {
		t.Fatalf("man rendered:\n%s", out)
	}
}
