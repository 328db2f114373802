package main

import (
	"bytes"
	"context"
	"strings"

	"github.com/flownexus/flownexus/appliance"
	"github.com/flownexus/flownexus/cmd/internal/manpage"
)

// cmdMan prints flownexus(1), made from the usage text and each command's
// own --help, so the page the package ships cannot drift from the binary.
// It is not listed in the usage: packaging/build-deb.sh runs it.
func cmdMan(ctx context.Context, e env) error {
	p := manpage.Page{
		Name: "flownexus", Section: 1, Source: "flownexus " + appliance.Version,
		Summary:  "offline LwM2M device-management appliance",
		Synopsis: strings.TrimPrefix(usage, "usage: "),
		Description: []string{
			`flownexus is an LwM2M server for constrained devices: it speaks LwM2M over CoAP/UDP and CoAP/DTLS,
			runs its own certificate authority, stores telemetry in SQLite, hosts firmware images for Object 5
			updates and serves a web UI and REST API on the local network. It needs no internet access.`,
			`The package runs it as the systemd service flownexus.service, as the unprivileged user flownexus,
			with its data in /var/lib/flownexus. With no --config, serve reads /etc/flownexus/flownexus.toml
			when it exists and embedded defaults otherwise; flags override the file. A listen address with
			port 0 picks a free port; the chosen addresses are logged.`,
		},
		Sections: []manpage.Section{
			{Title: "Commands", Paragraphs: []string{"Each command's options, as its --help prints them:"}, Entries: commandHelp(ctx, e)},
			{Title: "Files", Entries: []manpage.Entry{
				{Term: appliance.DefaultConfigFile, Body: "The configuration; every setting is listed with its default."},
				{Term: "/var/lib/flownexus", Body: "The data directory: database, PKI, firmware images, update packages."},
				{Term: "/usr/share/flownexus/update.pub", Body: "The minisign public key update packages must be signed with."},
			}},
			{Title: "Environment", Entries: []manpage.Entry{
				{Term: "STATE_DIRECTORY", Body: "Set by systemd; the data directory when the configuration names none."},
				{Term: "JOURNAL_STREAM", Body: "Set by systemd when standard error goes to the journal; the log is then JSON."},
			}},
			{Title: "Exit status", Paragraphs: []string{"0 on success, 1 when the command failed, 2 when the command line is wrong."}},
			{Title: "See also", Paragraphs: []string{"flownexus-sim(1), systemctl(1), journalctl(1); docs in /usr/share/doc/flownexus/."}},
		},
	}
	return p.Render(e.stdout)
}

// commandHelp runs every command the usage lists with --help and keeps
// what it prints.
func commandHelp(ctx context.Context, e env) []manpage.Entry {
	var out []manpage.Entry
	for _, words := range usageCommands(usage) {
		var b bytes.Buffer
		sub := env{stdin: strings.NewReader(""), stdout: &b, stderr: &b, getenv: func(string) string { return "" }}
		run(ctx, append(append([]string{}, words...), "--help"), sub)
		help := b.String()
		if !strings.Contains(help, "\n  -") {
			continue // no options (version)
		}
		out = append(out, manpage.Entry{Term: strings.Join(words, " "), Body: help, Preformatted: true})
	}
	return out
}

// usageCommands reads the command words of each entry of the usage text:
// the lines indented by two spaces, up to the first placeholder or flag.
func usageCommands(u string) [][]string {
	var cmds [][]string
	for _, l := range strings.Split(u, "\n") {
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
			continue
		}
		l, _, _ = strings.Cut(strings.TrimSpace(l), "  ") // drop the description
		var words []string
		for _, w := range strings.Fields(l) {
			if strings.ContainsAny(w[:1], "<[-|") || strings.ToLower(w) != w {
				break
			}
			words = append(words, w)
		}
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	return cmds
}
