package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/flownexus/flownexus/appliance"
)

func cmdUser(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || args[0] != "add" {
		return usageErr("user: the subcommand is add: flownexus user add <name> --role admin|operator|viewer")
	}
	fs := newFlagSet("user add", e)
	var cf configFlags
	cf.register(fs)
	role := fs.String("role", "", "admin, operator or viewer")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("user add takes one name, got %d", len(pos))
	}
	if *role == "" {
		return usageErr("user add: --role admin|operator|viewer is required")
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// One line from stdin: a pipe (`echo pw | flownexus user add …`) or a
	// terminal.
	line, err := bufio.NewReader(io.LimitReader(e.stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the password from stdin: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return errors.New("no password on stdin")
	}
	_, statErr := os.Stat(cfg.DatabasePath())
	u, err := appliance.AddUser(ctx, cfg, pos[0], *role, password)
	if err != nil {
		return err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// Most often a forgotten --data-dir: say where the user went.
		fmt.Fprintf(e.stderr, "note: there was no database in %s; a new one was created there. If the appliance runs with another data dir, pass --data-dir.\n", cfg.DataDir)
	}
	fmt.Fprintf(e.stdout, "user %s created with role %s in %s\n", u.Name, u.Role, cfg.DatabasePath())
	return nil
}

func cmdBackup(ctx context.Context, args []string, e env) error {
	fs := newFlagSet("backup", e)
	var cf configFlags
	cf.register(fs)
	out := fs.String("out", "", "archive to write (- for stdout)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *out == "" {
		return usageErr("backup --out FILE")
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	if *out == "-" {
		return appliance.BackupDataDir(ctx, cfg, e.stdout)
	}
	// Written beside the target and renamed, so a failed backup never
	// leaves a file that looks complete.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := appliance.BackupDataDir(ctx, cfg, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(e.stdout, "backup written to %s\n", *out)
	return nil
}

func cmdRestore(ctx context.Context, args []string, e env) error {
	fs := newFlagSet("restore", e)
	var cf configFlags
	cf.register(fs)
	in := fs.String("in", "", "archive to restore (- for stdin)")
	force := fs.Bool("force", false, "replace the data in a non-empty data dir")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *in == "" {
		return usageErr("restore --in FILE [--force]")
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	var r io.Reader = e.stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		defer f.Close()
		r = f
	}
	if err := appliance.RestoreDataDir(ctx, cfg, r, *force); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored into %s\n", cfg.DataDir)
	return nil
}

func cmdUpdateHelper(ctx context.Context, args []string, e env) error {
	fs := newFlagSet("update-helper", e)
	var cf configFlags
	cf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("update-helper takes no arguments")
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	log := cfg.Log.NewLogger(e.stderr, e.getenv)
	u := appliance.NewUpdater(cfg, appliance.WithUpdateLogger(log))
	return appliance.RunUpdateHelper(ctx, cfg, u, appliance.HelperOptions{Log: log})
}
