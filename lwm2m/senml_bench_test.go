package lwm2m

import "testing"

// Benchmarks of the telemetry hot path: a 10-resource composite with
// timestamps, as a Zephyr device sends it with Send or an Observe-Composite
// notification, decoded with the built-in models as the server does.

func senmlBenchDecode(b *testing.B, f Format) {
	data, err := Encode(f, Path{}, senmlComposite10(), nil)
	if err != nil {
		b.Fatal(err)
	}
	reg := NewRegistry()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		recs, err := Decode(f, Path{}, data, reg)
		if err != nil || len(recs) != 10 {
			b.Fatal(len(recs), err)
		}
	}
}

func senmlBenchEncode(b *testing.B, f Format) {
	recs := senmlComposite10()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(f, Path{}, recs, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSenMLCBORComposite10(b *testing.B) { senmlBenchDecode(b, FormatSenMLCBOR) }
func BenchmarkEncodeSenMLCBORComposite10(b *testing.B) { senmlBenchEncode(b, FormatSenMLCBOR) }
func BenchmarkDecodeSenMLJSONComposite10(b *testing.B) { senmlBenchDecode(b, FormatSenMLJSON) }
func BenchmarkEncodeSenMLJSONComposite10(b *testing.B) { senmlBenchEncode(b, FormatSenMLJSON) }

func BenchmarkDecodeLwM2MCBORDevice(b *testing.B) {
	data, err := Encode(FormatLwM2MCBOR, MustParsePath("/3/0"), senmlDeviceExample(), nil)
	if err != nil {
		b.Fatal(err)
	}
	reg := NewRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(FormatLwM2MCBOR, MustParsePath("/3/0"), data, reg); err != nil {
			b.Fatal(err)
		}
	}
}
