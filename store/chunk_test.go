package store

import (
	"errors"
	"math"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
)

func chunkSamples() map[lwm2m.DataType][]point {
	return map[lwm2m.DataType][]point{
		lwm2m.TypeFloat:    {{1000, lwm2m.Float(21.5)}, {1500, lwm2m.Float(math.Inf(-1))}, {1500, lwm2m.Float(-0.0)}, {900, lwm2m.Float(1e300)}},
		lwm2m.TypeInteger:  {{-5, lwm2m.Int(math.MinInt64)}, {10, lwm2m.Int(math.MaxInt64)}, {11, lwm2m.Int(0)}},
		lwm2m.TypeUnsigned: {{1, lwm2m.Uint(math.MaxUint64)}, {2, lwm2m.Uint(0)}},
		lwm2m.TypeTime:     {{1, lwm2m.TimeUnix(1700000000)}, {2, lwm2m.TimeUnix(-1)}},
		lwm2m.TypeBoolean:  {{1, lwm2m.Bool(true)}, {2, lwm2m.Bool(false)}},
		lwm2m.TypeString:   {{1, lwm2m.String("")}, {2, lwm2m.String("héllo, \"world\"")}},
		lwm2m.TypeCorelnk:  {{1, lwm2m.Corelnk("</3/0>;ver=1.1")}},
		lwm2m.TypeOpaque:   {{1, lwm2m.Opaque(nil)}, {2, lwm2m.Opaque([]byte{0, 255, 7})}},
		lwm2m.TypeObjlnk:   {{1, lwm2m.ObjlnkValue(lwm2m.Objlnk{ObjectID: 65535, InstanceID: 65535})}, {2, lwm2m.ObjlnkValue(lwm2m.Objlnk{ObjectID: 3, InstanceID: 0})}},
		lwm2m.TypeNone:     {{1, lwm2m.None()}},
	}
}

func TestChunkRoundTrip(t *testing.T) {
	for typ, pts := range chunkSamples() {
		b := encodeChunk(typ, pts)
		got, gt, err := decodeChunk(nil, b)
		if err != nil || gt != typ || len(got) != len(pts) {
			t.Fatalf("%s: %v %v %d", typ, err, gt, len(got))
		}
		for i := range pts {
			want := pts[i].v
			if typ == lwm2m.TypeOpaque && len(want.Bytes()) == 0 {
				want = lwm2m.Opaque([]byte{})
			}
			if got[i].t != pts[i].t || !got[i].v.Equal(want) && !(len(got[i].v.Bytes()) == 0 && len(want.Bytes()) == 0 && typ == lwm2m.TypeOpaque) {
				t.Errorf("%s[%d]: got %d %v want %d %v", typ, i, got[i].t, got[i].v, pts[i].t, pts[i].v)
			}
		}
	}
}

func TestChunkRejectsGarbage(t *testing.T) {
	good := encodeChunk(lwm2m.TypeString, []point{{1, lwm2m.String("abc")}})
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"type":        {1, 200, 1, 0},
		"zero count":  {1, byte(lwm2m.TypeFloat), 0},
		"huge count":  {1, byte(lwm2m.TypeFloat), 0xff, 0xff, 0xff, 0x7f},
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte{}, good...), 0),
		"bad boolean": {1, byte(lwm2m.TypeBoolean), 1, 0, 2},
		"short float": {1, byte(lwm2m.TypeFloat), 1, 0, 1, 2, 3},
	} {
		if _, _, err := decodeChunk(nil, b); !errors.Is(err, errChunk) {
			t.Errorf("%s: %v, want errChunk", name, err)
		}
	}
}

// FuzzDecodeChunk: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodeChunk(f *testing.F) {
	for typ, pts := range chunkSamples() {
		f.Add(encodeChunk(typ, pts))
	}
	f.Add([]byte{1, byte(lwm2m.TypeFloat), 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		nums, nerr := decodeChunkNumbers(nil, b)
		pts, typ, err := decodeChunk(nil, b)
		if err != nil {
			return
		}
		if nerr != nil {
			t.Fatalf("numeric decoder refuses a valid chunk: %v", nerr)
		}
		if _, numeric := pts[0].v.Number(); numeric && len(nums) != len(pts) {
			t.Fatalf("numeric decoder: %d points, want %d", len(nums), len(pts))
		}
		again := encodeChunk(typ, pts)
		pts2, typ2, err := decodeChunk(nil, again)
		if err != nil || typ2 != typ || len(pts2) != len(pts) {
			t.Fatalf("re-encoded chunk does not decode: %v", err)
		}
		for i := range pts {
			if pts[i].t != pts2[i].t || !pts[i].v.Equal(pts2[i].v) {
				t.Fatalf("point %d changed: %v → %v", i, pts[i], pts2[i])
			}
		}
	})
}

func TestDecodeChunkNumbersMatchesValues(t *testing.T) {
	for typ, pts := range chunkSamples() {
		b := encodeChunk(typ, pts)
		nums, err := decodeChunkNumbers(nil, b)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		full, _, _ := decodeChunk(nil, b)
		want := 0
		for i, p := range full {
			f, ok := p.v.Number()
			if !ok {
				continue
			}
			want++
			if nums[i].t != p.t || math.Float64bits(nums[i].f) != math.Float64bits(f) {
				t.Errorf("%s[%d]: %v, want %d %v", typ, i, nums[i], p.t, f)
			}
		}
		if len(nums) != want {
			t.Errorf("%s: %d numbers, want %d", typ, len(nums), want)
		}
	}
	if _, err := decodeChunkNumbers(nil, []byte{1, byte(lwm2m.TypeFloat), 2, 0, 0, 1}); !errors.Is(err, errChunk) {
		t.Fatalf("truncated: %v", err)
	}
}
