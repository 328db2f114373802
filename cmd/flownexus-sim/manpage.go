package main

import (
	"bytes"
	"io"

	"github.com/flownexus/flownexus/cmd/internal/manpage"
)

// writeManPage prints flownexus-sim(1) from the simulator's own --help, so
// the page the package ships cannot drift from its flags. `flownexus-sim
// man` is not in the help: packaging/build-deb.sh runs it.
func writeManPage(w io.Writer) error {
	var help bytes.Buffer
	parseArgs([]string{"--help"}, &help)
	p := manpage.Page{
		Name: "flownexus-sim", Section: 1, Source: "flownexus",
		Summary:  "simulated LwM2M devices for a FlowNexus appliance",
		Synopsis: "flownexus-sim --server coap://127.0.0.1:5683 --devices N [options]\nflownexus-sim --server coaps://HOST:5684 --endpoint NAME --psk-key HEX [options]",
		Description: []string{
			`flownexus-sim runs a fleet of simulated LwM2M devices against a FlowNexus appliance, or any LwM2M
			server: they register, answer reads, writes, executes and observations, and report changing sensor
			values. It is the load generator of the appliance's benchmarks and a way for a technician to try an
			installation, or a credential the enrollment wizard made, before real devices arrive.`,
			`It runs until interrupted (or for --duration), then de-registers every device. It sends only to the
			server it is given.`,
		},
		Sections: []manpage.Section{
			{Title: "Options", Entries: []manpage.Entry{{Term: "flownexus-sim", Body: help.String(), Preformatted: true}}},
			{Title: "Exit status", Paragraphs: []string{"0 on success, 1 when the fleet failed, 2 when the command line is wrong."}},
			{Title: "See also", Paragraphs: []string{"flownexus(1)"}},
		},
	}
	return p.Render(w)
}
