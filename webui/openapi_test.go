package webui

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
)

// The embedded copy served at /api/v1/openapi.yaml must be docs/openapi.yaml.
func TestOpenAPIMatchesDocs(t *testing.T) {
	docs, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := assets.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, emb) {
		t.Fatal("webui/openapi.yaml differs from docs/openapi.yaml: copy docs/openapi.yaml over it")
	}
}

// Every API route is documented with each of its methods.
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newEnv(t)
	doc, _ := assets.ReadFile("openapi.yaml")
	text := string(doc)
	param := regexp.MustCompile(`:([a-z]+)`)
	names := map[string]string{"ep": "endpoint", "id": "id", "name": "name"}
	checked := 0
	for _, r := range e.srv.echo.Router().Routes() {
		if !strings.HasPrefix(r.Path, "/api/") && r.Path != "/healthz" && r.Path != "/metrics" || r.Method == echo.RouteNotFound {
			continue
		}
		checked++
		p := param.ReplaceAllStringFunc(r.Path, func(m string) string { return "{" + names[m[1:]] + "}" })
		i := strings.Index(text, "\n  "+p+":\n")
		if i < 0 {
			t.Errorf("%s %s: path %s not in openapi.yaml", r.Method, r.Path, p)
			continue
		}
		block := text[i+1:]
		if j := regexp.MustCompile(`\n  /`).FindStringIndex(block); j != nil {
			block = block[:j[0]]
		}
		if !strings.Contains(block, "\n    "+strings.ToLower(r.Method)+":") {
			t.Errorf("%s %s: method not documented", r.Method, p)
		}
	}
	if checked < 35 {
		t.Fatalf("only %d API routes found", checked)
	}
}
