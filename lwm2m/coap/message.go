package coap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Type is the CoAP message type (RFC 7252 §3, §4).
type Type uint8

// Message types.
const (
	Confirmable     Type = 0 // CON: retransmitted until acknowledged
	NonConfirmable  Type = 1 // NON
	Acknowledgement Type = 2 // ACK
	Reset           Type = 3 // RST
)

// String is the RFC 7252 abbreviation: CON, NON, ACK, RST.
func (t Type) String() string {
	switch t {
	case Confirmable:
		return "CON"
	case NonConfirmable:
		return "NON"
	case Acknowledgement:
		return "ACK"
	case Reset:
		return "RST"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Code is a CoAP method or response code, c.dd packed as c<<5|dd (RFC 7252
// §3, §12.1).
type Code uint8

// Methods (RFC 7252 §12.1.1, RFC 8132 for FETCH/PATCH/iPATCH) and response
// codes (§12.1.2, RFC 7959 §2.9 for 2.31 and 4.08, 4.13).
const (
	Empty  Code = 0
	GET    Code = 1
	POST   Code = 2
	PUT    Code = 3
	DELETE Code = 4
	FETCH  Code = 5
	PATCH  Code = 6
	IPATCH Code = 7

	Created                  Code = 2<<5 | 1
	Deleted                  Code = 2<<5 | 2
	Valid                    Code = 2<<5 | 3
	Changed                  Code = 2<<5 | 4
	Content                  Code = 2<<5 | 5
	Continue                 Code = 2<<5 | 31
	BadRequest               Code = 4<<5 | 0
	Unauthorized             Code = 4<<5 | 1
	BadOption                Code = 4<<5 | 2
	Forbidden                Code = 4<<5 | 3
	NotFound                 Code = 4<<5 | 4
	MethodNotAllowed         Code = 4<<5 | 5
	NotAcceptable            Code = 4<<5 | 6
	RequestEntityIncomplete  Code = 4<<5 | 8
	Conflict                 Code = 4<<5 | 9
	PreconditionFailed       Code = 4<<5 | 12
	RequestEntityTooLarge    Code = 4<<5 | 13
	UnsupportedContentFormat Code = 4<<5 | 15
	InternalServerError      Code = 5<<5 | 0
	NotImplemented           Code = 5<<5 | 1
	BadGateway               Code = 5<<5 | 2
	ServiceUnavailable       Code = 5<<5 | 3
	GatewayTimeout           Code = 5<<5 | 4
)

// Class is the c of c.dd: 0 request, 2 success, 4 client error, 5 server error.
func (c Code) Class() uint8 { return uint8(c) >> 5 }

// IsRequest reports whether c is a method code.
func (c Code) IsRequest() bool { return c != Empty && c.Class() == 0 }

// IsResponse reports whether c is a response code (class 2 to 5).
func (c Code) IsResponse() bool { return c.Class() >= 2 && c.Class() <= 5 }

// IsSuccess reports a 2.xx code.
func (c Code) IsSuccess() bool { return c.Class() == 2 }

// String formats methods by name and responses as "2.05".
func (c Code) String() string {
	switch c {
	case Empty:
		return "0.00"
	case GET:
		return "GET"
	case POST:
		return "POST"
	case PUT:
		return "PUT"
	case DELETE:
		return "DELETE"
	case FETCH:
		return "FETCH"
	case PATCH:
		return "PATCH"
	case IPATCH:
		return "iPATCH"
	}
	return fmt.Sprintf("%d.%02d", c.Class(), uint8(c)&0x1f)
}

// OptionID is a CoAP option number (RFC 7252 §5.10, RFC 7641, RFC 7959).
type OptionID uint16

// Option numbers used by LwM2M.
const (
	IfMatch       OptionID = 1
	URIHost       OptionID = 3
	ETag          OptionID = 4
	IfNoneMatch   OptionID = 5
	Observe       OptionID = 6
	URIPort       OptionID = 7
	LocationPath  OptionID = 8
	URIPath       OptionID = 11
	ContentFormat OptionID = 12
	MaxAge        OptionID = 14
	URIQuery      OptionID = 15
	Accept        OptionID = 17
	LocationQuery OptionID = 20
	Block2        OptionID = 23
	Block1        OptionID = 27
	Size2         OptionID = 28
	ProxyURI      OptionID = 35
	ProxyScheme   OptionID = 39
	Size1         OptionID = 60
	NoResponse    OptionID = 258
)

// Critical reports an option a receiver must understand (odd numbers,
// RFC 7252 §5.4.1).
func (o OptionID) Critical() bool { return o&1 == 1 }

// Option is one option instance; Value holds its encoded bytes.
type Option struct {
	ID    OptionID
	Value []byte
}

// Limits of the codec.
const (
	// MaxTokenLength is the longest token RFC 7252 §3 allows.
	MaxTokenLength = 8
	// MaxOptions bounds the option count of one decoded message so a
	// malicious datagram cannot make the decoder allocate without bound.
	MaxOptions = 64
)

// Errors of the codec.
var (
	// ErrMalformed is returned for datagrams that are not CoAP messages
	// (RFC 7252 §3); they are silently dropped or answered with RST (§4.2).
	ErrMalformed = errors.New("coap: malformed message")
	// ErrTooLarge is returned when a message does not fit in MaxMessageSize.
	ErrTooLarge = errors.New("coap: message too large")
)

// Message is one CoAP message (RFC 7252 §3). Options are kept in the order
// they were added; Marshal sorts them stably by number, as the delta
// encoding requires, so repeated options (Uri-Path, Uri-Query) keep their
// relative order.
type Message struct {
	Type      Type
	Code      Code
	MessageID uint16
	Token     []byte
	Options   []Option
	Payload   []byte
}

// Unmarshal decodes a datagram. The returned message's slices alias data.
func Unmarshal(data []byte) (*Message, error) {
	m := new(Message)
	if err := m.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalBinary decodes a datagram into m; m's slices alias data.
func (m *Message) UnmarshalBinary(data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("%w: %d bytes, header needs 4", ErrMalformed, len(data))
	}
	if v := data[0] >> 6; v != 1 {
		return fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	m.Type = Type(data[0] >> 4 & 3)
	tkl := int(data[0] & 0x0f)
	if tkl > MaxTokenLength {
		return fmt.Errorf("%w: token length %d", ErrMalformed, tkl)
	}
	m.Code = Code(data[1])
	if c := m.Code.Class(); c == 1 || c == 6 || c == 7 {
		return fmt.Errorf("%w: reserved code class %d", ErrMalformed, c)
	}
	m.MessageID = binary.BigEndian.Uint16(data[2:4])
	data = data[4:]
	if len(data) < tkl {
		return fmt.Errorf("%w: token truncated", ErrMalformed)
	}
	m.Token = nil
	if tkl > 0 {
		m.Token = data[:tkl]
	}
	data = data[tkl:]
	// An Empty message is only the 4-byte header (§4.1).
	if m.Code == Empty && (tkl != 0 || len(data) != 0) {
		return fmt.Errorf("%w: empty message with token or content", ErrMalformed)
	}
	m.Options = m.Options[:0]
	m.Payload = nil
	var num uint32
	for len(data) > 0 {
		if data[0] == 0xff {
			if len(data) == 1 {
				return fmt.Errorf("%w: payload marker without payload", ErrMalformed)
			}
			m.Payload = data[1:]
			return nil
		}
		delta, length := uint32(data[0]>>4), uint32(data[0]&0x0f)
		data = data[1:]
		var err error
		if delta, data, err = optionExt(delta, data); err != nil {
			return err
		}
		if length, data, err = optionExt(length, data); err != nil {
			return err
		}
		num += delta
		if num > 0xffff {
			return fmt.Errorf("%w: option number %d", ErrMalformed, num)
		}
		if uint32(len(data)) < length {
			return fmt.Errorf("%w: option %d value truncated", ErrMalformed, num)
		}
		if len(m.Options) >= MaxOptions {
			return fmt.Errorf("%w: more than %d options", ErrMalformed, MaxOptions)
		}
		m.Options = append(m.Options, Option{ID: OptionID(num), Value: data[:length:length]})
		data = data[length:]
	}
	return nil
}

// optionExt reads the extended delta or length of RFC 7252 §3.1.
func optionExt(v uint32, data []byte) (uint32, []byte, error) {
	switch v {
	case 13:
		if len(data) < 1 {
			return 0, nil, fmt.Errorf("%w: option extension truncated", ErrMalformed)
		}
		return uint32(data[0]) + 13, data[1:], nil
	case 14:
		if len(data) < 2 {
			return 0, nil, fmt.Errorf("%w: option extension truncated", ErrMalformed)
		}
		return uint32(binary.BigEndian.Uint16(data)) + 269, data[2:], nil
	case 15:
		return 0, nil, fmt.Errorf("%w: reserved option nibble 15", ErrMalformed)
	}
	return v, data, nil
}

// Marshal encodes the message.
func (m *Message) Marshal() ([]byte, error) { return m.AppendBinary(make([]byte, 0, m.size())) }

func (m *Message) size() int {
	n := 4 + len(m.Token) + 1 + len(m.Payload)
	for _, o := range m.Options {
		n += 5 + len(o.Value)
	}
	return n
}

// AppendBinary appends the encoded message to b.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Token) > MaxTokenLength {
		return nil, fmt.Errorf("%w: token of %d bytes", ErrMalformed, len(m.Token))
	}
	b = append(b, 1<<6|byte(m.Type&3)<<4|byte(len(m.Token)), byte(m.Code), byte(m.MessageID>>8), byte(m.MessageID))
	b = append(b, m.Token...)
	opts := m.Options
	if !sort.SliceIsSorted(opts, func(i, j int) bool { return opts[i].ID < opts[j].ID }) {
		opts = append([]Option(nil), opts...)
		sort.SliceStable(opts, func(i, j int) bool { return opts[i].ID < opts[j].ID })
	}
	var prev OptionID
	for _, o := range opts {
		if len(o.Value) > 0xffff+269 {
			return nil, fmt.Errorf("%w: option %d of %d bytes", ErrTooLarge, o.ID, len(o.Value))
		}
		delta := uint32(o.ID - prev)
		prev = o.ID
		dn, dx := optionNibble(delta)
		ln, lx := optionNibble(uint32(len(o.Value)))
		b = append(b, dn<<4|ln)
		b = append(b, dx...)
		b = append(b, lx...)
		b = append(b, o.Value...)
	}
	if len(m.Payload) > 0 {
		b = append(b, 0xff)
		b = append(b, m.Payload...)
	}
	return b, nil
}

func optionNibble(v uint32) (byte, []byte) {
	switch {
	case v < 13:
		return byte(v), nil
	case v < 269:
		return 13, []byte{byte(v - 13)}
	}
	v -= 269
	return 14, []byte{byte(v >> 8), byte(v)}
}

// Option returns the first value of option id.
func (m *Message) Option(id OptionID) ([]byte, bool) {
	for _, o := range m.Options {
		if o.ID == id {
			return o.Value, true
		}
	}
	return nil, false
}

// HasOption reports whether option id is present.
func (m *Message) HasOption(id OptionID) bool {
	_, ok := m.Option(id)
	return ok
}

// AddOption appends an option instance.
func (m *Message) AddOption(id OptionID, v []byte) {
	m.Options = append(m.Options, Option{ID: id, Value: v})
}

// SetOption replaces every instance of id with one value.
func (m *Message) SetOption(id OptionID, v []byte) {
	m.RemoveOption(id)
	m.AddOption(id, v)
}

// RemoveOption deletes every instance of id.
func (m *Message) RemoveOption(id OptionID) {
	out := m.Options[:0]
	for _, o := range m.Options {
		if o.ID != id {
			out = append(out, o)
		}
	}
	m.Options = out
}

// Uint decodes a uint option (RFC 7252 §3.2: big-endian, leading zeros
// stripped, at most 4 bytes).
func (m *Message) Uint(id OptionID) (uint32, bool) {
	v, ok := m.Option(id)
	if !ok || len(v) > 4 {
		return 0, false
	}
	return decodeUint(v), true
}

// SetUint sets a uint option in its shortest form.
func (m *Message) SetUint(id OptionID, v uint32) { m.SetOption(id, EncodeUint(v)) }

func decodeUint(v []byte) uint32 {
	var n uint32
	for _, c := range v {
		n = n<<8 | uint32(c)
	}
	return n
}

// EncodeUint is the shortest big-endian form of v (empty for 0).
func EncodeUint(v uint32) []byte {
	switch {
	case v == 0:
		return []byte{}
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return []byte{byte(v >> 8), byte(v)}
	case v < 1<<24:
		return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	}
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// strings returns every value of a repeatable string option.
func (m *Message) strings(id OptionID) []string {
	var out []string
	for _, o := range m.Options {
		if o.ID == id {
			out = append(out, string(o.Value))
		}
	}
	return out
}

// Path is the Uri-Path joined with "/" and a leading "/" ("/" when absent).
func (m *Message) Path() string { return "/" + strings.Join(m.strings(URIPath), "/") }

// PathSegments returns the Uri-Path options.
func (m *Message) PathSegments() []string { return m.strings(URIPath) }

// SetPath replaces the Uri-Path options with the segments of p.
func (m *Message) SetPath(p string) {
	m.RemoveOption(URIPath)
	for _, s := range strings.Split(strings.Trim(p, "/"), "/") {
		if s != "" {
			m.AddOption(URIPath, []byte(s))
		}
	}
}

// Queries returns the Uri-Query options ("ep=node1", "Q", …).
func (m *Message) Queries() []string { return m.strings(URIQuery) }

// AddQuery appends one Uri-Query option.
func (m *Message) AddQuery(q string) { m.AddOption(URIQuery, []byte(q)) }

// LocationPath returns the Location-Path options.
func (m *Message) LocationPath() []string { return m.strings(LocationPath) }

// ContentFormat returns the Content-Format option.
func (m *Message) ContentFormat() (uint16, bool) {
	v, ok := m.Uint(ContentFormat)
	if !ok || v > 0xffff {
		return 0, false
	}
	return uint16(v), true
}

// SetContentFormat sets the Content-Format option.
func (m *Message) SetContentFormat(f uint16) { m.SetUint(ContentFormat, uint32(f)) }

// Accept returns the Accept option.
func (m *Message) Accept() (uint16, bool) {
	v, ok := m.Uint(Accept)
	if !ok || v > 0xffff {
		return 0, false
	}
	return uint16(v), true
}

// SetAccept sets the Accept option.
func (m *Message) SetAccept(f uint16) { m.SetUint(Accept, uint32(f)) }

// Observe returns the Observe option (RFC 7641 §2: 0..2^24-1).
func (m *Message) Observe() (uint32, bool) {
	v, ok := m.Uint(Observe)
	if !ok || v >= 1<<24 {
		return 0, false
	}
	return v, true
}

// SetObserve sets the Observe option (the value is taken modulo 2^24).
func (m *Message) SetObserve(v uint32) { m.SetUint(Observe, v&(1<<24-1)) }

// ETag returns the first ETag option.
func (m *Message) ETag() ([]byte, bool) { return m.Option(ETag) }

// Block is a Block1 or Block2 option value (RFC 7959 §2.2).
type Block struct {
	Num  uint32 // block number, < 2^20
	More bool   // more blocks follow
	SZX  uint8  // size exponent: size = 2^(SZX+4), 0..6
}

// Size is the block size in bytes.
func (b Block) Size() int { return 1 << (b.SZX + 4) }

// Offset is the byte offset of the block.
func (b Block) Offset() int { return int(b.Num) << (b.SZX + 4) }

func (b Block) encode() uint32 {
	v := b.Num<<4 | uint32(b.SZX&7)
	if b.More {
		v |= 8
	}
	return v
}

// Block returns the Block1 or Block2 option; ok is false when it is absent
// or invalid (SZX 7 is reserved, RFC 7959 §2.2).
func (m *Message) Block(id OptionID) (Block, bool) {
	v, ok := m.Uint(id)
	if !ok || v > 1<<24-1 {
		return Block{}, false
	}
	b := Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}
	if b.SZX == 7 {
		return Block{}, false
	}
	return b, true
}

// SetBlock sets the Block1 or Block2 option.
func (m *Message) SetBlock(id OptionID, b Block) { m.SetUint(id, b.encode()) }

// SZXFor returns the largest size exponent whose block fits in size bytes
// (16..1024).
func SZXFor(size int) uint8 {
	szx := uint8(6)
	for szx > 0 && 1<<(szx+4) > size {
		szx--
	}
	return szx
}

// Clone returns a deep copy of m that shares nothing with it.
func (m *Message) Clone() *Message {
	c := &Message{Type: m.Type, Code: m.Code, MessageID: m.MessageID}
	if m.Token != nil {
		c.Token = append([]byte(nil), m.Token...)
	}
	if m.Payload != nil {
		c.Payload = append([]byte(nil), m.Payload...)
	}
	c.Options = make([]Option, len(m.Options))
	for i, o := range m.Options {
		c.Options[i] = Option{ID: o.ID, Value: append([]byte(nil), o.Value...)}
	}
	return c
}

// String is a one-line summary for logs.
func (m *Message) String() string {
	return fmt.Sprintf("%s %s mid=%d token=%x path=%s payload=%dB", m.Type, m.Code, m.MessageID, m.Token, m.Path(), len(m.Payload))
}
