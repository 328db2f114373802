package webui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v5"
)

// The pages' templates, the CSS and JS, and the vendored htmx and uPlot
// (with their licences) are compiled into the binary: the appliance works
// without any network beyond the LAN.
//
//go:embed templates static openapi.yaml
var assets embed.FS

// static serves /static/* from the embedded files with a content-hash
// ETag, so browsers revalidate cheaply and never run a stale app.js after
// an upgrade.
func (s *Server) static(c *echo.Context) error {
	name := path.Clean("static/" + c.Param("*"))
	if !strings.HasPrefix(name, "static/") {
		return errorf(http.StatusNotFound, "no such file")
	}
	b, err := fs.ReadFile(assets, name)
	if err != nil {
		return errorf(http.StatusNotFound, "no such file")
	}
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" || strings.HasSuffix(name, "LICENSE") {
		ct = "text/plain; charset=utf-8"
	}
	return c.Blob(http.StatusOK, ct, b)
}

func (s *Server) openapi(c *echo.Context) error {
	b, err := assets.ReadFile("openapi.yaml")
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml", b)
}
