package client

import (
	"fmt"

	"github.com/flownexus/flownexus/lwm2m"
)

// Notification attributes (Core 1.2 §5.1.2) are lwm2m.Attributes; the
// client stores them per path and merges the levels: what is set at a
// deeper level overrides what the object or instance has.

// parseWriteAttributes parses the URI-Query of a Write-Attributes request
// (Core §6.3.4) and checks it fits the target. Unknown names, malformed or
// inconsistent values are ErrBadRequest.
func parseWriteAttributes(p lwm2m.Path, queries []string, rm *lwm2m.ResourceModel) (lwm2m.Attributes, error) {
	if len(queries) == 0 {
		return lwm2m.Attributes{}, fmt.Errorf("client: write-attributes %s: %w: no attributes", p, ErrBadRequest)
	}
	u, err := lwm2m.ParseAttributes(queries)
	if err != nil {
		return u, fmt.Errorf("client: write-attributes %s: %w: %w", p, ErrBadRequest, err)
	}
	if err := checkAttributes(p, u, rm); err != nil {
		return u, err
	}
	return u, nil
}

// checkAttributes validates attributes (an update or the merged result)
// against each other and against the target's data type.
func checkAttributes(p lwm2m.Path, a lwm2m.Attributes, rm *lwm2m.ResourceModel) error {
	t, known := lwm2m.TypeNone, false
	if rm != nil {
		t, known = rm.Type, true
	}
	if p.Len() >= 3 && rm == nil {
		known = false
	}
	if err := a.Validate(); err != nil {
		return fmt.Errorf("client: write-attributes %s: %w: %w", p, ErrBadRequest, err)
	}
	if err := a.ValidateFor(p, t, known || p.Len() < 3); err != nil {
		return fmt.Errorf("client: write-attributes %s: %w: %w", p, ErrBadRequest, err)
	}
	return nil
}
