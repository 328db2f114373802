package appliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// uiCredentials lets an admin revoke devices and import CAs
// (webui.PKI).
type uiCredentials struct {
	db  *store.DB
	pki *PKI
	srv *server.Server
}

var _ webui.PKI = uiCredentials{}

// Revoke marks the credential revoked, which the DTLS handshake and the
// registration check enforce, and ends the current registration so the
// device is out at its next message rather than at its next handshake.
func (u uiCredentials) Revoke(ctx context.Context, endpoint string) error {
	if err := u.db.RevokeCredential(ctx, endpoint); err != nil {
		return err
	}
	u.srv.Evict(ctx, endpoint)
	return nil
}

func (u uiCredentials) ImportCA(_ context.Context, cert []byte) (string, error) {
	c, err := u.pki.ImportCA(cert)
	if errors.Is(err, ErrBadCA) {
		return "", fmt.Errorf("%w: %v", webui.ErrInvalid, err)
	}
	if err != nil {
		return "", err
	}
	return c.Subject.String(), nil
}
