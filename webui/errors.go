package webui

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

// Sentinel errors the appliance's implementations of webui's interfaces
// wrap so that the edge can choose a status code; store's own sentinels are
// translated the same way.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrInvalid     = errors.New("invalid")
	ErrUnavailable = errors.New("unavailable")
	ErrTooLarge    = errors.New("too large")
)

// apiError is an error with the status code and the message the client sees.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string   { return e.msg }
func (e *apiError) StatusCode() int { return e.code }

func errorf(code int, format string, args ...any) error {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps an error to an HTTP status and a message safe to show.
func statusOf(err error) (int, string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code, ae.msg
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, publicMessage(err)
	case errors.Is(err, ErrConflict), errors.Is(err, store.ErrConflict):
		return http.StatusConflict, publicMessage(err)
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid):
		return http.StatusUnprocessableEntity, publicMessage(err)
	case errors.Is(err, ErrUnavailable), errors.Is(err, store.ErrQueueFull), errors.Is(err, store.ErrClosed):
		return http.StatusServiceUnavailable, publicMessage(err)
	}
	if c := echo.StatusCode(err); c != 0 {
		return c, http.StatusText(c)
	}
	return http.StatusInternalServerError, "internal error"
}

// publicMessage turns a wrapped error chain into what a user reads: the
// package names that context-wrapping leaves in ("store: …") and the same
// context said twice go, and the sentinels' wording becomes plain.
//
//	provision "d1": store: provision "d1": conflict  →  provision "d1": already exists
//	store: endpoint "nope": not found                →  endpoint "nope": not found
//	invalid: retention must be 1 to 3650 days         →  retention must be 1 to 3650 days
func publicMessage(err error) string {
	var kept []string
	for _, part := range strings.Split(err.Error(), ": ") {
		switch part {
		case "store", "webui", "appliance", "server", "invalid":
			continue // package names, and the sentinel the status code says
		}
		if len(kept) > 0 && kept[len(kept)-1] == part {
			continue
		}
		kept = append(kept, part)
	}
	if n := len(kept); n > 0 && kept[n-1] == "conflict" {
		kept[n-1] = "already exists"
	}
	return strings.Join(kept, ": ")
}
