package appliance

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection keeps the dependency rules of ARCHITECTURE.md true:
// imports point one way, cmd → appliance → (webui, firmware, store, lwm2m).
func TestImportDirection(t *testing.T) {
	const mod = "github.com/flownexus/flownexus/"
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string][]string{
		"lwm2m":      {"lwm2m"},
		"store":      {"lwm2m", "store"},
		"firmware":   {"lwm2m", "store", "firmware"},
		"webui":      {"lwm2m", "store", "webui"},
		"simulation": {"lwm2m", "simulation"},
		"appliance":  {"lwm2m", "store", "firmware", "webui", "appliance"},
		"cmd":        {"lwm2m", "store", "firmware", "webui", "appliance", "simulation", "cmd"},
		// packaging holds the .deb's files and their tests; it builds the
		// binary with go build, never imports it.
		"packaging": {"packaging"},
	}
	top := func(p string) string { return strings.SplitN(strings.TrimPrefix(p, mod), "/", 2)[0] }
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], mod) {
			continue
		}
		from := top(fields[0])
		rules, ok := allowed[from]
		if !ok {
			t.Errorf("package %s is outside the fixed layout", fields[0])
			continue
		}
		checked++
		for _, dep := range fields[1:] {
			if !strings.HasPrefix(dep, mod) {
				continue
			}
			to := top(dep)
			ok := false
			for _, a := range rules {
				ok = ok || a == to
			}
			if !ok {
				t.Errorf("%s imports %s: %s may import only %v", fields[0], dep, from, rules)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no project package was checked")
	}
}
