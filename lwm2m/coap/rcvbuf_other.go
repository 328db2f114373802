//go:build !linux

package coap

import (
	"errors"
	"net"
)

var errUnknownBuffer = errors.New("coap: the receive buffer size cannot be read on this system")

func readBuffer(*net.UDPConn) (int, error) { return 0, errUnknownBuffer }

func forceReadBuffer(*net.UDPConn, int) error { return errUnknownBuffer }
