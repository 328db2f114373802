package main

import (
	"context"
	"fmt"

	"github.com/flownexus/flownexus/appliance"
)

// cmdFirmware adds an image to the library without a browser: a technician
// with a USB stick runs `flownexus firmware add app.bin --version 1.2.0`.
func cmdFirmware(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "add" {
		return usageErr("firmware: the subcommand is add: flownexus firmware add <file> --version V [--name N]")
	}
	fs := newFlagSet("firmware add", e)
	var cf configFlags
	cf.register(fs)
	version := fs.String("version", "", "the image's firmware version (as the device reports it in 3/0/3)")
	name := fs.String("name", "", "a name for the image (default: the file name)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("firmware add takes one file, got %d", len(pos))
	}
	if *version == "" {
		return usageErr("firmware add: --version is required")
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	f, err := appliance.AddFirmware(ctx, cfg, pos[0], *version, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "firmware #%d %s (%s) added: %d bytes, sha256 %s\n", f.ID, f.Version, f.Name, f.Size, f.SHA256)
	return nil
}
