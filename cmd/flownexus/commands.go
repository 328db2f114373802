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
	"text/tabwriter"
	"time"

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

// cmdToken is `flownexus token create <name> --role R [--expires D] |
// token list | token revoke <name>` (../shared/API.md).
func cmdToken(ctx context.Context, args []string, e env) error {
	const syntax = "flownexus token create <name> --role admin|operator|viewer [--expires never|90d|12h|2027-01-31] | token list | token revoke <name>"
	if len(args) == 0 {
		return usageErr("token: %s", syntax)
	}
	sub := args[0]
	fs := newFlagSet("token "+sub, e)
	var cf configFlags
	cf.register(fs)
	role := fs.String("role", "", "admin, operator or viewer (create)")
	expires := fs.String("expires", "never", "never, a duration (90d, 12h) or a date (create)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 0, "revoke": 1}
	n, ok := want[sub]
	if !ok {
		return usageErr("token: unknown subcommand %q: %s", sub, syntax)
	}
	if len(pos) != n {
		return usageErr("token %s takes %d name(s), got %d: %s", sub, n, len(pos), syntax)
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	switch sub {
	case "create":
		if *role == "" {
			return usageErr("token create: --role admin|operator|viewer is required")
		}
		t, err := appliance.CreateToken(ctx, cfg, pos[0], *role, *expires)
		if err != nil {
			return err
		}
		exp := "never"
		if !t.Expires.IsZero() {
			exp = t.Expires.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(e.stderr, "token %s created with role %s, expires %s; it is shown only now:\n", t.Name, t.Role, exp)
		fmt.Fprintln(e.stdout, t.Secret)
	case "list":
		ts, err := appliance.ListTokens(ctx, cfg)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tEXPIRES\tLAST USED\tCREATED BY")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, orNever(t.Expires), orNever(t.LastUsed), t.CreatedBy)
		}
		return tw.Flush()
	case "revoke":
		if err := appliance.RevokeToken(ctx, cfg, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "token %s revoked\n", pos[0])
	}
	return nil
}

func orNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
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
