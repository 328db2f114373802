// Command flownexus is the FlowNexus appliance: an offline LwM2M
// device-management server with its own web UI, run by systemd.
//
// Subcommands: serve, user add, token, firmware add, backup, restore, update-helper, version.
// See flownexus(1) and docs/operations.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/flownexus/flownexus/appliance"
)

// exit codes: 0 success, 1 the command failed, 2 the command line is wrong,
// 75 (EX_TEMPFAIL) serve stopped for a restart an admin asked for, which
// systemd's Restart=on-failure carries out.
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitRestart = 75
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
	})
	stop()
	os.Exit(code)
}

// env is the process environment a subcommand sees; tests give their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

const usage = `usage: flownexus <command> [flags]

commands:
  serve [--config FILE] [--data-dir DIR] [--http ADDR] [--coap ADDR] [--coaps ADDR]
        [--bootstrap ADDR] [--check-config]
                          run the appliance (or only check the configuration)
  user add <name> --role admin|operator|viewer [--config FILE] [--data-dir DIR]
                          create a user; the password is read from stdin
  token create <name> --role admin|operator|viewer [--expires never|90d|12h|DATE]
  token list | token revoke <name>
                          long-lived API tokens (Authorization: Bearer <token>)
  firmware add <file> --version V [--name N] [--config FILE] [--data-dir DIR]
                          add a firmware image to the library
  backup --out FILE [--config FILE] [--data-dir DIR]
                          write a backup archive (database, PKI, firmware)
  restore --in FILE [--force] [--config FILE] [--data-dir DIR]
                          restore a backup archive into an empty data dir
  update-helper [--config FILE]
                          install a verified self-update (run by flownexus-update.service)
  version                 print the version
`

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], e)
	case "user":
		err = cmdUser(ctx, args[1:], e)
	case "token":
		err = cmdToken(ctx, args[1:], e)
	case "firmware":
		err = cmdFirmware(ctx, args[1:], e)
	case "backup":
		err = cmdBackup(ctx, args[1:], e)
	case "restore":
		err = cmdRestore(ctx, args[1:], e)
	case "update-helper":
		err = cmdUpdateHelper(ctx, args[1:], e)
	case "version", "--version", "-v":
		err = cmdVersion(e)
	case "man":
		err = cmdMan(ctx, e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "flownexus: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, appliance.ErrRestart):
		fmt.Fprintln(e.stderr, "flownexus: stopped for a restart; systemd starts it again")
		return exitRestart
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "flownexus: %s\n", oneLine(err))
		return exitUsage
	default:
		fmt.Fprintf(e.stderr, "flownexus: %s\n", oneLine(err))
		return exitFail
	}
}

// errUsage marks a wrong command line (exit status 2).
var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// oneLine keeps a failure to the single line systemd and scripts show.
func oneLine(err error) string {
	s := strings.TrimPrefix(err.Error(), "usage: ")
	return strings.Join(strings.Fields(s), " ")
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments (`user add alice --role admin`), which the flag
// package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErr("%v", err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlagSet(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("flownexus "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}
