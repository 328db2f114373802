// Command flownexus-sim runs a fleet of simulated LwM2M devices against a
// FlowNexus (or any LwM2M) server: the load generator and demo tool that
// replaces the old Docker-based simulate.py.
//
//	flownexus-sim --server coap://127.0.0.1:5683 --devices 1000 \
//	    --endpoint-prefix sim- --lifetime 300 --queue-share 0.2 \
//	    --start-spread 10s --rate 1s --source-addrs 127.0.0.1-127.0.0.8
//
// It runs until Ctrl-C (or --duration), then de-registers every device.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) == 2 && os.Args[1] == "man" {
		if err := writeManPage(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "flownexus-sim:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "flownexus-sim:", err)
		os.Exit(1)
	}
}
