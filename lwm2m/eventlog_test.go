package lwm2m

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseSeverity(t *testing.T) {
	cases := []struct {
		line string
		want Severity
	}{
		{"[00:00:01.234,567] <err> main: sensor read failed", SeverityErr},
		{"[00:00:01.234,567] <wrn> net_lwm2m_engine: retry", SeverityWarning},
		{"[00:00:01.234,567] <inf> app: booted", SeverityInfo},
		{"[00:00:01.234,567] <dbg> app: x=1", SeverityDebug},
		{"<3>kernel: oops", SeverityErr},
		{"<14>Jan  1 app: hello", SeverityInfo},
		{"E: minimal mode error", SeverityErr},
		{"W: minimal warning", SeverityWarning},
		{"ERROR something broke", SeverityErr},
		{"[warn] low battery", SeverityWarning},
		{"Info: all good", SeverityInfo},
		{"2026-01-02T03:04:05Z CRITICAL disk", SeverityUnknown}, // level after a stamp not in brackets
		{"just text", SeverityUnknown},
		{"Error-free run", SeverityUnknown},
		{"", SeverityUnknown},
		{"E:no space", SeverityUnknown},
	}
	for _, c := range cases {
		if got := ParseSeverity(c.line); got != c.want {
			t.Errorf("ParseSeverity(%q) = %v, want %v", c.line, got, c.want)
		}
	}
}

func TestParseSeverityName(t *testing.T) {
	for in, want := range map[string]Severity{"err": SeverityErr, "ERROR": SeverityErr, "wrn": SeverityWarning, "warning": SeverityWarning, "3": SeverityErr, "debug": SeverityDebug} {
		if got, err := ParseSeverityName(in); err != nil || got != want {
			t.Errorf("ParseSeverityName(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "loud", "8", "e"} {
		if _, err := ParseSeverityName(bad); err == nil {
			t.Errorf("ParseSeverityName(%q) accepted", bad)
		}
	}
}

func TestDecodeLogDataText(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	data := []byte("[00:00:01.000,000] \x1b[1;31m<err> main: boom\x1b[0m\r\n\n<inf> app: ok\n2026-03-04T05:06:07Z dev time line\n\x00\x00")
	got := DecodeLogData(data, 0, NewPath(20, 0), at, 0)
	if len(got) != 3 {
		t.Fatalf("lines = %#v", got)
	}
	if got[0].Line != "[00:00:01.000,000] <err> main: boom" || got[0].Severity != SeverityErr || !got[0].Time.Equal(at) {
		t.Errorf("line 0 = %#v", got[0])
	}
	if got[1].Severity != SeverityInfo {
		t.Errorf("line 1 = %#v", got[1])
	}
	if want := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC); !got[2].Time.Equal(want) {
		t.Errorf("line 2 time = %v, want %v", got[2].Time, want)
	}
}

func TestDecodeLogDataInvalidUTF8IsHex(t *testing.T) {
	data := []byte{0xff, 0xfe, 'a', 0x00, 0x01, 0x80}
	got := DecodeLogData(data, 0, Path{}, time.Time{}, 0)
	if len(got) != 1 || got[0].Line != HexPrefix+"fffe61000180" {
		t.Fatalf("got %#v", got)
	}
	big := make([]byte, 100)
	for i := range big {
		big[i] = 0xff
	}
	if got := DecodeLogData(big, 0, Path{}, time.Time{}, 0); len(got) != 4 {
		t.Fatalf("100 bytes gave %d hex lines, want 4", len(got))
	}
}

func TestDecodeLogDataLongLineSplit(t *testing.T) {
	l := strings.Repeat("é", MaxLogLine) // 2 bytes each
	got := DecodeLogData([]byte(l), 0, Path{}, time.Time{}, 0)
	total := 0
	for _, e := range got {
		if len(e.Line) > MaxLogLine || !utf8.ValidString(e.Line) {
			t.Fatalf("line of %d bytes, valid %v", len(e.Line), utf8.ValidString(e.Line))
		}
		total += len(e.Line)
	}
	if total != len(l) {
		t.Fatalf("kept %d bytes of %d", total, len(l))
	}
}

func TestDecodeLogDataMaxLines(t *testing.T) {
	got := DecodeLogData([]byte(strings.Repeat("x\n", 50)), 0, Path{}, time.Time{}, 10)
	if len(got) != 10 || !strings.Contains(got[9].Line, "41 more lines") {
		t.Fatalf("got %d lines, last %q", len(got), got[len(got)-1].Line)
	}
}

func TestDecodeLogDataStructured(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	recs := []Record{
		{Path: MustParsePath("/20/0/4014"), Value: String("<wrn> first\n<err> second"), Time: at},
		{Path: MustParsePath("/20/0/4013"), Value: Int(2), Time: at.Add(time.Second)},
	}
	senml, err := Encode(FormatSenMLCBOR, Path{}, recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := DecodeLogData(senml, LogFormatCBOR, NewPath(20, 0), time.Time{}, 0)
	if len(got) != 3 || got[0].Severity != SeverityWarning || got[1].Severity != SeverityErr || !got[0].Time.Equal(at) || got[2].Line != "/20/0/4013 2" {
		t.Fatalf("CBOR: %#v", got)
	}
	js, err := Encode(FormatSenMLJSON, Path{}, recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := DecodeLogData(js, LogFormatJSON, NewPath(20, 0), time.Time{}, 0); len(got) != 3 {
		t.Fatalf("JSON: %#v", got)
	}
	tlv, err := Encode(FormatTLV, NewPath(20, 0), []Record{{Path: MustParsePath("/20/0/4014"), Value: Opaque([]byte("<inf> tlv line"))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := DecodeLogData(tlv, LogFormatTLV, NewPath(20, 0), at, 0); len(got) != 1 || got[0].Line != "<inf> tlv line" || got[0].Severity != SeverityInfo {
		t.Fatalf("TLV: %#v", got)
	}
	// Declared CBOR that is not: kept as hex.
	if got := DecodeLogData([]byte("not cbor at all"), LogFormatCBOR, NewPath(20, 0), at, 0); len(got) != 1 || !strings.HasPrefix(got[0].Line, HexPrefix) {
		t.Fatalf("bad CBOR: %#v", got)
	}
}

// FuzzDecodeLogData: any bytes in any format give valid UTF-8 lines no
// longer than MaxLogLine (hex lines are shorter), and nothing panics.
func FuzzDecodeLogData(f *testing.F) {
	f.Add([]byte("[00:00:01.000,000] <err> main: boom\n"), int64(0))
	f.Add([]byte{0xff, 0x00, 0x1b, '['}, int64(0))
	f.Add([]byte{0xc8, 0x0f, 0xae, 0x05, 'h', 'e', 'l', 'l', 'o'}, int64(1))
	f.Add([]byte(`[{"n":"/20/0/4014","vs":"x"}]`), int64(2))
	f.Add([]byte{0x81, 0xa2, 0x00, 0x6a, '/', '2', '0', '/', '0', '/', '4', '0', '1', '4', 0x03, 0x61, 'x'}, int64(3))
	f.Add([]byte("2026-01-02 03:04:05Z x\r\n<191>y"), int64(200))
	f.Fuzz(func(t *testing.T, data []byte, format int64) {
		for _, e := range DecodeLogData(data, format, NewPath(20, 0), time.Time{}, 1000) {
			if !utf8.ValidString(e.Line) {
				t.Fatalf("invalid UTF-8 line %q", e.Line)
			}
			if len(e.Line) > MaxLogLine+len(HexPrefix)+100 {
				t.Fatalf("line of %d bytes", len(e.Line))
			}
			if e.Severity < SeverityUnknown || e.Severity > SeverityDebug {
				t.Fatalf("severity %d", e.Severity)
			}
		}
	})
}
