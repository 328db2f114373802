package manpage

import (
	"fmt"
	"io"
	"strings"
)

// Page is one manual page. Help texts are shown as the command prints
// them (preformatted); prose fields are filled paragraphs.
type Page struct {
	Name     string // the program, e.g. "flownexus"
	Section  int    // 1 for user commands
	Summary  string // the NAME line after the dash
	Source   string // the footer's source, e.g. "flownexus 1.4.0"
	Synopsis string // the usage text, as the program prints it
	// Description holds paragraphs of prose.
	Description []string
	// Sections follow DESCRIPTION in order (COMMANDS, OPTIONS, FILES …).
	Sections []Section
}

// Section is a titled part of the page: prose paragraphs, then entries.
type Section struct {
	Title      string
	Paragraphs []string
	Entries    []Entry
}

// Entry is a term and what it means. With Preformatted the body is the
// program's own output (a flag listing), kept line for line.
type Entry struct {
	Term         string
	Body         string
	Preformatted bool
}

// Render writes the page as roff.
func (p Page) Render(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %d \"\" %q \"User Commands\"\n", strings.ToUpper(text(p.Name)), p.Section, p.Source)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", text(p.Name), text(p.Summary))
	b.WriteString(".SH SYNOPSIS\n")
	pre(&b, p.Synopsis)
	if len(p.Description) > 0 {
		b.WriteString(".SH DESCRIPTION\n")
		paragraphs(&b, p.Description)
	}
	for _, s := range p.Sections {
		fmt.Fprintf(&b, ".SH %s\n", strings.ToUpper(text(s.Title)))
		paragraphs(&b, s.Paragraphs)
		for _, e := range s.Entries {
			if e.Preformatted {
				fmt.Fprintf(&b, ".SS %s\n", text(e.Term))
				pre(&b, e.Body)
				continue
			}
			fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", text(e.Term), line(text(e.Body)))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func paragraphs(b *strings.Builder, ps []string) {
	for i, p := range ps {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		b.WriteString(line(text(strings.Join(strings.Fields(p), " "))) + "\n")
	}
}

// pre keeps the program's layout: no filling, no adjusting.
func pre(b *strings.Builder, s string) {
	b.WriteString(".nf\n")
	for _, l := range strings.Split(strings.TrimRight(strings.ReplaceAll(s, "\t", "        "), "\n"), "\n") {
		b.WriteString(line(text(l)) + "\n")
	}
	b.WriteString(".fi\n")
}

// text escapes what roff would read as markup: the escape character, and
// hyphens, which must be \- to stay minus signs in options (man-pages(7)).
func text(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// line keeps a line that starts with a control character ('.' or ”') from
// being read as a request.
func line(s string) string {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return `\&` + s
	}
	return s
}
