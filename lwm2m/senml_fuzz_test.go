package lwm2m

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the structured decoders. Each input gives records or a
// *DecodeError, never a panic; what decodes also encodes, and decodes
// again to the same records.

type senmlDecodeAtFunc func(base Path, data []byte, reg *Registry, now func() time.Time) ([]Record, error)

func senmlFuzzRoundTrip(t *testing.T, f Format, dec senmlDecodeAtFunc, data []byte, reg *Registry) {
	recs, err := dec(Path{}, data, nil, senmlFixedClock)
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("error is %T, not *DecodeError: %v", err, err)
		}
		if de.Format != f {
			t.Fatalf("error names format %v: %v", de.Format, err)
		}
	} else {
		if len(recs) > MaxRecords {
			t.Fatalf("%d records", len(recs))
		}
		out, err := Encode(f, Path{}, recs, nil)
		if err != nil {
			t.Fatalf("decoded records do not encode: %v\n%s", err, senmlRecordsString(recs))
		}
		back, err := dec(Path{}, out, nil, senmlFixedClock)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v\n%x", err, out)
		}
		if f == FormatLwM2MCBOR {
			SortRecords(recs)
		}
		if !senmlSameRecords(recs, back) {
			t.Fatalf("round trip:\n got %s\nwant %s", senmlRecordsString(back), senmlRecordsString(recs))
		}
	}
	// With a model the same input is typed, or refused; still no panic.
	_, _ = dec(Path{}, data, reg, senmlFixedClock)
}

func lwm2mCBORDecodeAt(base Path, data []byte, reg *Registry, _ func() time.Time) ([]Record, error) {
	return decodeLwM2MCBOR(base, data, reg)
}

func FuzzDecodeSenMLCBOR(f *testing.F) {
	for _, s := range []string{specDeviceSenMLCBOR, rfc8428CBOR,
		`83 a3 21 6c 2f333330332f302f35373030 22 1a 6742dd00 02 f9 4da0 a2 06 0a 02 f9 4db0 a2 06 14 02 f9 4dc0`,
		`9f bf 21 66 2f332f302f39 24 0a 00 60 02 05 18 64 82 01 a1 01 02 ff bf 21 60 00 7f 62 2f33 64 2f302f31 ff 03 c1 7f 61 41 61 42 ff ff ff`,
		`81 a2 00 66 2f332f302f30 63 766c6f 63 333a30`,
		`81 a2 00 66 2f332f302f30 08 42 0102`,
	} {
		f.Add(senmlHex(f, s))
	}
	for _, recs := range [][]Record{senmlEveryType(), senmlComposite10()} {
		b, err := Encode(FormatSenMLCBOR, Path{}, recs, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reg := structuredRegistry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		senmlFuzzRoundTrip(t, FormatSenMLCBOR, decodeSenMLCBORAt, data, reg)
	})
}

func FuzzDecodeSenMLJSON(f *testing.F) {
	for _, s := range []string{specDeviceSenMLJSON, rfc8428JSON, rfc8428TypesJSON,
		`[{"n":"/32769/0/8/0","vs":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"},{"n":"/32769/0/0","vlo":"3:0"}]`,
		`[{"bn":"/3303/0/5700","bt":1732435200,"v":22.5},{"t":-10,"v":2.25e1},{"t":1.5,"v":-0.0}]`,
	} {
		f.Add([]byte(s))
	}
	for _, recs := range [][]Record{senmlEveryType(), senmlComposite10()} {
		b, err := Encode(FormatSenMLJSON, Path{}, recs, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reg := structuredRegistry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		senmlFuzzRoundTrip(t, FormatSenMLJSON, decodeSenMLJSONAt, data, reg)
	})
}

func FuzzDecodeLwM2MJSON(f *testing.F) {
	for _, s := range []string{specDeviceLwM2MJSON,
		`{"e":[{"n":"1","v":22.4,"t":-5},{"n":"1","v":22.9,"t":-30}],"bn":"/3303/0/"}`,
		`{"bn":"/3303/0/5700","bt":1732435200,"e":[{"v":22.5},{"v":23.5,"t":60}]}`,
		`{"bn":"/","e":[{"n":"32769/0/0","ov":"3:0"},{"n":"32769/0/4","bv":true}]}`,
	} {
		f.Add([]byte(s))
	}
	reg := structuredRegistry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		senmlFuzzRoundTrip(t, FormatLwM2MJSON, decodeLwM2MJSONAt, data, reg)
	})
}

func FuzzDecodeLwM2MCBOR(f *testing.F) {
	for _, s := range []string{
		`a1 03 a1 03 a1 03 18 19`,
		`bf 03 bf 03 bf 03 18 19 ff ff ff`,
		`a1 03 a1 00 a3 00 74 4f70656e204d6f62696c6520416c6c69616e6365 06 a2 00 01 01 05 0d c1 1a 5182428f`,
		`a2 03 a1 00 a1 09 18 64 19 0ce7 a1 00 a1 19 1644 f9 4da0`,
		`a1 82 03 00 a2 00 61 78 82 06 01 05`,
		`a1 19 8001 a1 00 a4 00 63 333a30 03 42 0102 04 f4 06 39 01f3`,
		`a1 9f 03 00 09 ff 01`,
	} {
		f.Add(senmlHex(f, s))
	}
	reg := structuredRegistry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		senmlFuzzRoundTrip(t, FormatLwM2MCBOR, lwm2mCBORDecodeAt, data, reg)
	})
}

// FuzzDecodePaths covers the path lists of Read-Composite and
// Observe-Composite in the three formats that carry them; the first byte
// picks the format.
func FuzzDecodePaths(f *testing.F) {
	formats := []Format{FormatSenMLJSON, FormatSenMLCBOR, FormatLwM2MCBOR}
	f.Add(append([]byte{0}, `[{"n":"/3/0/0"},{"n":"/1/0/1"},{"n":"/3303"},{"n":"/"}]`...))
	f.Add(append([]byte{0}, `[{"bn":"/3/0/","n":"0"},{"n":"9"}]`...))
	f.Add(append([]byte{1}, senmlHex(f, `85 a1 00 66 2f332f302f30 a1 00 66 2f312f302f31 a1 00 65 2f33333033 a1 00 68 2f332f302f362f31 a1 00 61 2f`)...))
	f.Add(append([]byte{2}, senmlHex(f, `a3 01 f6 03 a1 00 a1 00 f6 19 0ce7 a1 00 a1 19 1644 f6`)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		ft := formats[int(in[0])%len(formats)]
		paths, err := DecodePaths(ft, in[1:])
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, not *DecodeError: %v", err, err)
			}
			return
		}
		out, err := EncodePaths(ft, paths)
		if ft == FormatLwM2MCBOR && len(paths) == 0 {
			return
		}
		if err != nil {
			t.Fatalf("decoded paths %v do not encode: %v", paths, err)
		}
		back, err := DecodePaths(ft, out)
		if err != nil {
			t.Fatalf("re-encoded paths do not decode: %v", err)
		}
		if ft == FormatLwM2MCBOR {
			// The tree form sorts and drops paths inside others: every
			// path must still be covered.
			for _, p := range paths {
				covered := false
				for _, q := range back {
					covered = covered || q.Contains(p)
				}
				if !covered {
					t.Fatalf("%s lost: %v", p, back)
				}
			}
			return
		}
		if len(back) != len(paths) {
			t.Fatalf("got %v, want %v", back, paths)
		}
		for i := range paths {
			if back[i] != paths[i] {
				t.Fatalf("path %d: got %s, want %s (%s)", i, back[i], paths[i], strings.TrimSpace(string(out)))
			}
		}
	})
}
