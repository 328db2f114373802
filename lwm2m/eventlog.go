package lwm2m

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The Event Log object, 20 (OMA-SUP-XML_LWM2M_EventLog-V2_1, registry file
// 20.xml; LwM2M 1.2 reusable resources 4010–4017). Zephyr implements it
// with CONFIG_LWM2M_EVENT_LOG_OBJ_SUPPORT: one instance, LogData read
// through an application callback.
const (
	EventLogObject       uint16 = 20
	LogClassID           uint16 = 4010 // RW integer: 0 generic, 1 system, 2 security, 3 event, 4 trace, 5 panic, 6 charging
	LogStartID           uint16 = 4011 // E: start data collection, LogStatus bit 0 := 0
	LogStopID            uint16 = 4012 // E: stop data collection, LogStatus bit 0 := 1
	LogStatusID          uint16 = 4013 // R 8 bits: running/stopped, valid data, error
	LogDataID            uint16 = 4014 // R opaque: the data collection
	LogDataFormatID      uint16 = 4015 // RW integer: how LogData is encoded
	LogDataIncrementalID uint16 = 4016 // opaque, only in Send: data since the last Send
)

// LogDataFormat values (resource 4015): 0 or absent is a plain sequence of
// bytes; 1–3 are the OMA TLV, JSON and CBOR formats; 100–255 vendor specific.
const (
	LogFormatBytes = 0
	LogFormatTLV   = 1
	LogFormatJSON  = 2
	LogFormatCBOR  = 3
)

// IsLogData reports whether p is a LogData or LogDataIncremental resource
// of an Event Log instance.
func IsLogData(p Path) bool {
	return p.Len() >= 3 && p.ObjectID() == EventLogObject &&
		(p.ResourceID() == LogDataID || p.ResourceID() == LogDataIncrementalID)
}

// Severity is a log line's level on the syslog scale (RFC 5424 §6.2.1): 0
// emergency to 7 debug; SeverityUnknown when the line names none.
type Severity int8

// The syslog severities.
const (
	SeverityUnknown Severity = -1
	SeverityEmerg   Severity = 0
	SeverityAlert   Severity = 1
	SeverityCrit    Severity = 2
	SeverityErr     Severity = 3
	SeverityWarning Severity = 4
	SeverityNotice  Severity = 5
	SeverityInfo    Severity = 6
	SeverityDebug   Severity = 7
)

var severityNames = [8]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// String is the syslog keyword, or "" when unknown.
func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return ""
	}
	return severityNames[s]
}

// severityWords maps level words and abbreviations (Zephyr's <err>, <wrn>,
// <inf>, <dbg>; syslog keywords; common logger names) to a severity.
var severityWords = map[string]Severity{
	"emerg": SeverityEmerg, "emergency": SeverityEmerg, "panic": SeverityEmerg,
	"alert": SeverityAlert,
	"crit":  SeverityCrit, "critical": SeverityCrit, "fatal": SeverityCrit,
	"err": SeverityErr, "error": SeverityErr, "e": SeverityErr,
	"wrn": SeverityWarning, "warn": SeverityWarning, "warning": SeverityWarning, "w": SeverityWarning,
	"notice": SeverityNotice, "note": SeverityNotice,
	"inf": SeverityInfo, "info": SeverityInfo, "i": SeverityInfo,
	"dbg": SeverityDebug, "debug": SeverityDebug, "d": SeverityDebug, "trace": SeverityDebug,
}

// ParseSeverityName reads a severity given by name (any of the words
// ParseSeverity knows, case-insensitive) or syslog number 0–7.
func ParseSeverityName(s string) (Severity, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 7 {
		return Severity(n), nil
	}
	if v, ok := severityWords[s]; ok && len(s) > 1 {
		return v, nil
	}
	return SeverityUnknown, fmt.Errorf("%w: severity %q: want emerg, alert, crit, err, warning, notice, info, debug or 0–7", ErrMalformed, s)
}

// ParseSeverity finds the level a log line states: Zephyr's "<err>",
// "<wrn>", "<inf>", "<dbg>" after the optional "[uptime]" stamp; a syslog
// "<PRI>" at the start (RFC 5424 §6.2.1, severity = PRI mod 8); Zephyr's
// minimal-mode "E: "/"W: "/"I: "/"D: "; or a leading level word ("ERROR",
// "[warn]", "Info:").
func ParseSeverity(line string) Severity {
	s := line
	if len(s) > 64 {
		s = s[:64]
	}
	s = strings.TrimLeft(s, " \t")
	// Syslog PRI.
	if strings.HasPrefix(s, "<") {
		if end := strings.IndexByte(s, '>'); end > 1 && end <= 4 {
			if n, err := strconv.Atoi(s[1:end]); err == nil && n >= 0 && n <= 191 {
				return Severity(n % 8)
			}
		}
	}
	// Zephyr: "[00:00:01.234,567] <inf> module: text".
	if i := strings.Index(s, "<"); i >= 0 {
		if end := strings.IndexByte(s[i:], '>'); end > 1 && end <= 8 {
			if v, ok := severityWords[strings.ToLower(s[i+1:i+end])]; ok && end > 2 {
				return v
			}
		}
	}
	// Skip a leading bracketed time stamp, then look at the first word.
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			w := strings.ToLower(strings.TrimSpace(s[1:end]))
			if v, ok := severityWords[w]; ok && len(w) > 1 {
				return v
			}
			s = strings.TrimLeft(s[end+1:], " \t")
		}
	}
	end := strings.IndexAny(s, " :]\t")
	if end <= 0 {
		return SeverityUnknown
	}
	w := strings.ToLower(s[:end])
	v, ok := severityWords[w]
	if !ok {
		return SeverityUnknown
	}
	// One-letter levels only in Zephyr's "E: " form.
	if len(w) == 1 && !strings.HasPrefix(s[end:], ": ") {
		return SeverityUnknown
	}
	return v
}

// LogEntry is one line decoded from LogData.
type LogEntry struct {
	// Time is the device's time for the line when the payload carries one
	// (a record time, an RFC 3339 stamp at the start of the line); zero
	// otherwise.
	Time     time.Time
	Severity Severity
	Line     string
}

// Limits of DecodeLogData.
const (
	// MaxLogLine is the longest line kept; longer lines are split.
	MaxLogLine = 2048
	// hexLineBytes is how many bytes of undecodable data one hex line shows.
	hexLineBytes = 32
)

// HexPrefix starts the lines that show undecodable bytes as hex;
// CutPrefix the line saying that lines beyond the limit were left out.
const (
	HexPrefix = "[hex] "
	CutPrefix = "[cut] "
)

// DecodeLogData turns one LogData value into lines according to
// LogDataFormat (resource 4015). Format 0 (or unknown) is a sequence of
// bytes: valid UTF-8 text is split into lines; anything else is kept as
// hex lines. Formats 1–3 decode LwM2M TLV, JSON or CBOR (LwM2M or SenML)
// records, one or more lines per record, with the record's time. What does
// not decode is kept as hex, never dropped. t is the time carried by the
// record LogData came in (zero: none). At most maxLines lines are returned
// (0: no limit), the last of them saying how many were left out.
func DecodeLogData(data []byte, format int64, inst Path, t time.Time, maxLines int) []LogEntry {
	var out []LogEntry
	switch format {
	case LogFormatTLV, LogFormatJSON, LogFormatCBOR:
		recs, ok := decodeLogRecords(data, format, inst)
		if !ok {
			out = hexLines(data, t)
			break
		}
		for _, r := range recs {
			rt := r.Time
			if rt.IsZero() {
				rt = t
			}
			out = append(out, recordLines(r, rt)...)
		}
	default:
		out = bytesLines(data, t)
	}
	if maxLines > 0 && len(out) > maxLines {
		cut := len(out) - (maxLines - 1)
		out = append(out[:maxLines-1], LogEntry{Time: t, Severity: SeverityWarning,
			Line: fmt.Sprintf("%s%d more lines of this record were cut (limit %d lines)", CutPrefix, cut, maxLines)})
	}
	return out
}

// decodeLogRecords tries the encodings a LogDataFormat may mean: TLV of the
// Event Log instance's resources, LwM2M JSON or SenML JSON, LwM2M CBOR or
// SenML CBOR.
func decodeLogRecords(data []byte, format int64, inst Path) ([]Record, bool) {
	var fs []Format
	base := Path{}
	switch format {
	case LogFormatTLV:
		fs = []Format{FormatTLV}
		base = inst
		if base.Len() < 2 {
			base = NewPath(EventLogObject, 0)
		}
		base = base.Truncate(2)
	case LogFormatJSON:
		fs = []Format{FormatLwM2MJSON, FormatSenMLJSON}
	case LogFormatCBOR:
		fs = []Format{FormatLwM2MCBOR, FormatSenMLCBOR}
	}
	for _, f := range fs {
		if recs, err := Decode(f, base, data, nil); err == nil && len(recs) > 0 {
			return recs, true
		}
	}
	return nil, false
}

// recordLines renders one decoded record: strings and UTF-8 opaque values
// as their text lines, other values as "path value".
func recordLines(r Record, t time.Time) []LogEntry {
	switch r.Value.Type() {
	case TypeString:
		return bytesLines([]byte(r.Value.Str()), t)
	case TypeOpaque:
		return bytesLines(r.Value.Bytes(), t)
	}
	line := r.Path.String() + " " + r.Value.Text()
	return []LogEntry{{Time: t, Severity: ParseSeverity(line), Line: line}}
}

// bytesLines is format 0: text when the bytes are valid UTF-8 without
// binary control characters, hex otherwise.
func bytesLines(data []byte, t time.Time) []LogEntry {
	// C strings often carry their terminating NULs.
	data = bytes.TrimRight(data, "\x00")
	if len(data) == 0 {
		return nil
	}
	if !isText(data) {
		return hexLines(data, t)
	}
	return textLines(string(data), t)
}

// isText reports valid UTF-8 with no control characters but tab, CR, LF,
// form feed and ESC (terminal colours, which textLines strips).
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b || c == 0x7f {
			return false
		}
	}
	return true
}

// textLines splits text on line ends, strips ANSI colour sequences (Zephyr's
// CONFIG_LOG_BACKEND_SHOW_COLOR), drops empty lines, splits lines longer
// than MaxLogLine, and reads each line's severity and RFC 3339 stamp.
func textLines(s string, t time.Time) []LogEntry {
	var out []LogEntry
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == '\f' }) {
		l = strings.TrimRight(stripANSI(l), " \t")
		if strings.TrimSpace(l) == "" {
			continue
		}
		lt := t
		if st, ok := leadingTime(l); ok {
			lt = st
		}
		sev := ParseSeverity(l)
		for len(l) > MaxLogLine {
			cut := MaxLogLine
			for cut > 0 && !utf8.RuneStart(l[cut]) {
				cut--
			}
			out = append(out, LogEntry{Time: lt, Severity: sev, Line: l[:cut]})
			l = l[cut:]
		}
		out = append(out, LogEntry{Time: lt, Severity: sev, Line: l})
	}
	return out
}

// stripANSI removes CSI escape sequences (ECMA-48 §5.4: ESC [ parameters
// final byte) and any other lone ESC.
func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
		}
	}
	return b.String()
}

// leadingTime reads an RFC 3339 time stamp that starts a line, alone or in
// brackets.
func leadingTime(l string) (time.Time, bool) {
	s := strings.TrimPrefix(l, "[")
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') {
		return time.Time{}, false
	}
	end := strings.IndexAny(s, " ]")
	if end == 10 { // "2026-01-02 15:04:05Z"
		if e2 := strings.IndexAny(s[11:], " ]"); e2 >= 0 {
			end = 11 + e2
		} else {
			end = len(s)
		}
	}
	if end < 0 {
		end = len(s)
	}
	ts := strings.Replace(s[:end], " ", "T", 1)
	v, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || v.Year() < 2000 {
		return time.Time{}, false
	}
	return v.UTC(), true
}

// hexLines shows bytes that are not text, hexLineBytes per line.
func hexLines(data []byte, t time.Time) []LogEntry {
	var out []LogEntry
	for len(data) > 0 {
		n := min(len(data), hexLineBytes)
		out = append(out, LogEntry{Time: t, Severity: SeverityUnknown, Line: HexPrefix + hex.EncodeToString(data[:n])})
		data = data[n:]
	}
	return out
}
