package lwm2m

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// CoRE Link Format, application/link-format (40): RFC 6690 §2, with the
// LwM2M attributes of Core §5.1.2 and §6.2.1 (Register/Update payloads) and
// §6.3 (Discover answers).
//
// The general layer is Link: a target and its parameters as written.
// RegisterPayload and DiscoverLink give them LwM2M meaning.

// Link is one link-value: "<target>;name=value;name".
type Link struct {
	Target string // the URI-reference between < and >
	Params []LinkParam
}

// LinkParam is one link parameter. NoValue marks a bare name (";obs",
// or an unset attribute); Quoted one written as a quoted-string
// (";rt=\"oma.lwm2m\""), which FormatLinks keeps.
type LinkParam struct {
	Name    string
	Value   string
	Quoted  bool
	NoValue bool
}

// Param returns the value of the first parameter called name.
func (l Link) Param(name string) (string, bool) {
	for _, p := range l.Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// ParseLinks parses a link-format document (RFC 6690 §2). It tolerates
// white space around separators and an empty document. Errors are
// *DecodeError with the byte offset and the link index.
func ParseLinks(data []byte) ([]Link, error) {
	p := linkParser{s: string(data)}
	return p.links()
}

type linkParser struct {
	s   string
	off int
	n   int // index of the link being parsed
}

func (p *linkParser) err(field, format string, args ...any) error {
	return decodeErr(FormatLinkFormat, p.off, p.n, field, format, args...)
}

func (p *linkParser) space() {
	for p.off < len(p.s) {
		switch p.s[p.off] {
		case ' ', '\t', '\r', '\n':
			p.off++
		default:
			return
		}
	}
}

func (p *linkParser) links() ([]Link, error) {
	var out []Link
	p.space()
	if p.off == len(p.s) {
		return out, nil
	}
	for {
		if len(out) >= MaxRecords {
			return nil, tlvLimitErr(FormatLinkFormat, p.off, p.n, "more than %d links", MaxRecords)
		}
		l, err := p.link()
		if err != nil {
			return nil, err
		}
		out = append(out, l)
		p.n++
		p.space()
		if p.off == len(p.s) {
			return out, nil
		}
		if p.s[p.off] != ',' {
			return nil, p.err("separator", "want ',' between links, got %q", p.s[p.off])
		}
		p.off++
		p.space()
	}
}

func (p *linkParser) link() (Link, error) {
	var l Link
	if p.off >= len(p.s) || p.s[p.off] != '<' {
		return l, p.err("target", "a link starts with '<'")
	}
	end := strings.IndexByte(p.s[p.off+1:], '>')
	if end < 0 {
		return l, p.err("target", "no '>' closes the target")
	}
	l.Target = p.s[p.off+1 : p.off+1+end]
	for i := 0; i < len(l.Target); i++ {
		if c := l.Target[i]; c <= ' ' || c == '<' || c == '"' || c == 0x7F {
			return l, p.err("target", "target has character %q", c)
		}
	}
	p.off += end + 2
	for {
		p.space()
		if p.off >= len(p.s) || p.s[p.off] != ';' {
			return l, nil
		}
		p.off++
		p.space()
		param, err := p.param()
		if err != nil {
			return l, err
		}
		l.Params = append(l.Params, param)
	}
}

// param parses "name", "name=ptoken" or "name=\"quoted\"" (RFC 6690 §2,
// link-extension).
func (p *linkParser) param() (LinkParam, error) {
	var lp LinkParam
	start := p.off
	for p.off < len(p.s) && isParmnameChar(p.s[p.off]) {
		p.off++
	}
	if p.off == start {
		if p.off < len(p.s) {
			return lp, p.err("parameter", "parameter name expected, got %q", p.s[p.off])
		}
		return lp, p.err("parameter", "parameter name expected at end of input")
	}
	lp.Name = p.s[start:p.off]
	p.space()
	if p.off >= len(p.s) || p.s[p.off] != '=' {
		lp.NoValue = true
		return lp, nil
	}
	p.off++
	p.space()
	if p.off < len(p.s) && p.s[p.off] == '"' {
		v, err := p.quoted()
		if err != nil {
			return lp, err
		}
		lp.Value, lp.Quoted = v, true
		return lp, nil
	}
	start = p.off
	for p.off < len(p.s) && isPtokenChar(p.s[p.off]) {
		p.off++
	}
	lp.Value = p.s[start:p.off]
	return lp, nil
}

// quoted parses a quoted-string with backslash escapes (RFC 7230 §3.2.6).
func (p *linkParser) quoted() (string, error) {
	start := p.off
	p.off++ // opening quote
	var b []byte
	plain := true
	for p.off < len(p.s) {
		c := p.s[p.off]
		switch c {
		case '"':
			v := p.s[start+1 : p.off]
			if !plain {
				v = string(b)
			}
			p.off++
			return v, nil
		case '\\':
			if p.off+1 >= len(p.s) {
				p.off = start
				return "", p.err("parameter", "quoted string ends in a backslash")
			}
			if plain {
				b = append(b, p.s[start+1:p.off]...)
				plain = false
			}
			b = append(b, p.s[p.off+1])
			p.off += 2
			continue
		}
		if !plain {
			b = append(b, c)
		}
		p.off++
	}
	p.off = start
	return "", p.err("parameter", "quoted string is not closed")
}

// isParmnameChar: RFC 5987 parmname, plus '*' of ext-value names.
func isParmnameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~*", c) >= 0
}

// isPtokenChar: RFC 6690 ptokenchar.
func isPtokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'()*+-./:<=>?@[]^_`{|}~", c) >= 0
}

// FormatLinks writes links in link-format, "," between links.
func FormatLinks(links []Link) []byte { return AppendLinks(nil, links) }

// AppendLinks appends links in link-format to dst. A value is written as a
// quoted-string when its parameter says Quoted or when it is not a ptoken.
func AppendLinks(dst []byte, links []Link) []byte {
	for i, l := range links {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendLink(dst, l)
	}
	return dst
}

func appendLink(dst []byte, l Link) []byte {
	dst = append(dst, '<')
	dst = append(dst, l.Target...)
	dst = append(dst, '>')
	for _, p := range l.Params {
		dst = append(dst, ';')
		dst = append(dst, p.Name...)
		if p.NoValue {
			continue
		}
		dst = append(dst, '=')
		dst = appendLinkValue(dst, p.Value, p.Quoted)
	}
	return dst
}

func appendLinkValue(dst []byte, v string, quoted bool) []byte {
	if !quoted {
		quoted = v == ""
		for i := 0; i < len(v) && !quoted; i++ {
			quoted = !isPtokenChar(v[i])
		}
	}
	if !quoted {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, v[i])
	}
	return append(dst, '"')
}

// ---- Register and Update payloads ----

// RegisterPayload is what a Register or Update payload says (Core §6.2.1,
// "Register"): the client's root path, the content formats it supports, and
// its objects with their versions and instances. For example
//
//	</>;rt="oma.lwm2m";ct="60 110 112 11542",</1/0>,</3>;ver=1.1,</3/0>,</5>
//
// or, with an alternate root path,
//
//	</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>
type RegisterPayload struct {
	// RootPath is "/" or the alternate path the client announced with
	// rt="oma.lwm2m" ("/lwm2m"); requests to the client start with it.
	RootPath string
	// ContentFormats lists the formats of the root link's ct attribute
	// (LwM2M 1.1+; 1.0 clients write a single ct=11543 for JSON). Empty
	// when the client did not say.
	ContentFormats []Format
	// Objects, in ascending id order.
	Objects []RegisteredObject
}

// RegisteredObject is one object the client has.
type RegisteredObject struct {
	ID uint16
	// Version is the ver attribute ("1.1"); empty means the object's
	// version of LwM2M 1.0, "1.0".
	Version string
	// Instances in ascending order; empty when the client lists the
	// object without instances.
	Instances []uint16
}

// ParseRegisterPayload parses a Register or Update payload. It is lenient
// where clients differ: white space after commas, targets without the
// leading "/", links that are not object or instance paths (skipped).
func ParseRegisterPayload(data []byte) (RegisterPayload, error) {
	links, err := ParseLinks(data)
	if err != nil {
		return RegisterPayload{}, err
	}
	rp := RegisterPayload{RootPath: "/"}
	root := -1
	for i, l := range links {
		if rt, ok := l.Param("rt"); ok && hasToken(rt, "oma.lwm2m") {
			root = i
			break
		}
	}
	if root < 0 {
		for i, l := range links {
			if t := strings.TrimSpace(l.Target); t == "/" || t == "" {
				root = i
				break
			}
		}
	}
	if root >= 0 {
		rp.RootPath = normalizeRoot(links[root].Target)
		if ct, ok := links[root].Param("ct"); ok {
			for _, f := range strings.Fields(ct) {
				n, err := strconv.ParseUint(f, 10, 16)
				if err != nil {
					return RegisterPayload{}, decodeErr(FormatLinkFormat, -1, root, "ct", "%q is not a content format number", f)
				}
				rp.ContentFormats = append(rp.ContentFormats, Format(n))
			}
		}
	}
	objs := map[uint16]*RegisteredObject{}
	for i, l := range links {
		if i == root {
			continue
		}
		p, ok := registerPath(rp.RootPath, l.Target)
		if !ok || p.Len() < 1 || p.Len() > 2 {
			continue
		}
		o := objs[p.ObjectID()]
		if o == nil {
			o = &RegisteredObject{ID: p.ObjectID()}
			objs[o.ID] = o
		}
		if ver, ok := l.Param("ver"); ok {
			if !isVersion(ver) {
				return RegisterPayload{}, decodeErr(FormatLinkFormat, -1, i, "ver", "%q is not a version MAJOR.MINOR", ver)
			}
			o.Version = ver
		}
		if p.Len() == 2 {
			o.Instances = append(o.Instances, p.InstanceID())
		}
	}
	rp.Objects = make([]RegisteredObject, 0, len(objs))
	for _, o := range objs {
		sort.Slice(o.Instances, func(a, b int) bool { return o.Instances[a] < o.Instances[b] })
		o.Instances = dedupIDs(o.Instances)
		rp.Objects = append(rp.Objects, *o)
	}
	sort.Slice(rp.Objects, func(a, b int) bool { return rp.Objects[a].ID < rp.Objects[b].ID })
	return rp, nil
}

// hasToken reports whether the space-separated list s holds tok.
func hasToken(s, tok string) bool {
	for _, f := range strings.Fields(s) {
		if f == tok {
			return true
		}
	}
	return false
}

func normalizeRoot(t string) string {
	t = strings.TrimSpace(t)
	t = strings.TrimRight(t, "/")
	if t == "" {
		return "/"
	}
	if t[0] != '/' {
		t = "/" + t
	}
	return t
}

// registerPath turns a link target into an LwM2M path below the root path.
func registerPath(root, target string) (Path, bool) {
	t := strings.TrimSpace(target)
	if t != "" && t[0] != '/' {
		t = "/" + t
	}
	if root != "/" {
		if rest, ok := strings.CutPrefix(t, root); ok && (rest == "" || rest[0] == '/') {
			t = rest
		}
	}
	p, err := ParsePath(t)
	if err != nil {
		return Path{}, false
	}
	return p, true
}

// isVersion accepts MAJOR.MINOR as the ver attribute uses it (Core §5.1.2).
func isVersion(s string) bool {
	a, b, ok := strings.Cut(s, ".")
	if !ok || a == "" || b == "" {
		return false
	}
	for _, part := range [2]string{a, b} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

func dedupIDs(ids []uint16) []uint16 {
	if len(ids) < 2 {
		return ids
	}
	out := ids[:1]
	for _, id := range ids[1:] {
		if id != out[len(out)-1] {
			out = append(out, id)
		}
	}
	return out
}

// Object returns the entry of one object.
func (rp RegisterPayload) Object(id uint16) (RegisteredObject, bool) {
	i := sort.Search(len(rp.Objects), func(i int) bool { return rp.Objects[i].ID >= id })
	if i < len(rp.Objects) && rp.Objects[i].ID == id {
		return rp.Objects[i], true
	}
	return RegisteredObject{}, false
}

// Paths lists the object paths (objects without instances) and instance
// paths the payload announces, in order.
func (rp RegisterPayload) Paths() []Path {
	var out []Path
	for _, o := range rp.Objects {
		if len(o.Instances) == 0 {
			out = append(out, NewPath(o.ID))
			continue
		}
		for _, i := range o.Instances {
			out = append(out, NewPath(o.ID, i))
		}
	}
	return out
}

// Links returns the payload as links: the root link when there is an
// alternate root path or content formats, then per object an object link
// when it has a version other than 1.0 or no instances, and its instances.
func (rp RegisterPayload) Links() []Link {
	var out []Link
	root := normalizeRoot(rp.RootPath)
	if root != "/" || len(rp.ContentFormats) > 0 {
		l := Link{Target: root, Params: []LinkParam{{Name: "rt", Value: "oma.lwm2m", Quoted: true}}}
		if len(rp.ContentFormats) > 0 {
			cts := make([]string, len(rp.ContentFormats))
			for i, f := range rp.ContentFormats {
				cts[i] = strconv.Itoa(int(f))
			}
			l.Params = append(l.Params, LinkParam{Name: "ct", Value: strings.Join(cts, " "), Quoted: len(cts) > 1})
		}
		out = append(out, l)
	}
	prefix := ""
	if root != "/" {
		prefix = root
	}
	for _, o := range rp.Objects {
		obj := NewPath(o.ID)
		if (o.Version != "" && o.Version != "1.0") || len(o.Instances) == 0 {
			l := Link{Target: prefix + obj.String()}
			if o.Version != "" && o.Version != "1.0" {
				l.Params = []LinkParam{{Name: "ver", Value: o.Version}}
			}
			out = append(out, l)
		}
		for _, i := range o.Instances {
			out = append(out, Link{Target: prefix + obj.Append(i).String()})
		}
	}
	return out
}

// Format writes the payload as a Register or Update sends it.
func (rp RegisterPayload) Format() []byte { return FormatLinks(rp.Links()) }

// ---- Discover ----

// DiscoverLink is one link of a Discover answer (Core §6.3, "Discover";
// Bootstrap-Discover, Core §6.1): a path with the attributes attached to it.
//
//	</3>;ver=1.1,</3/0>;pmin=10,</3/0/7>;dim=2;gt=50,</3/0/7/0>
type DiscoverLink struct {
	Path    Path
	Version string     // ver, on object links
	Dim     UintAttr   // dim: number of instances of a multiple resource
	SSID    UintAttr   // ssid (Bootstrap-Discover)
	URI     string     // uri (Bootstrap-Discover)
	Attrs   Attributes // pmin, pmax, gt, lt, st, epmin, epmax, edge, con, hqmax
	// Other holds parameters this package does not interpret (for example
	// lwm2m on Bootstrap-Discover's root link), as written.
	Other []LinkParam
}

// ParseDiscover parses a Discover or Bootstrap-Discover answer. Links whose
// targets are not LwM2M paths are errors, as are malformed attribute values.
func ParseDiscover(data []byte) ([]DiscoverLink, error) {
	links, err := ParseLinks(data)
	if err != nil {
		return nil, err
	}
	out := make([]DiscoverLink, 0, len(links))
	for i, l := range links {
		t := strings.TrimSpace(l.Target)
		if t != "" && t[0] != '/' {
			t = "/" + t
		}
		p, err := ParsePath(t)
		if err != nil {
			return nil, &DecodeError{Format: FormatLinkFormat, Offset: -1, Record: i, Field: "target", Err: err}
		}
		dl := DiscoverLink{Path: p}
		for _, prm := range l.Params {
			if err := dl.setParam(prm); err != nil {
				return nil, &DecodeError{Format: FormatLinkFormat, Offset: -1, Record: i, Field: prm.Name, Err: err}
			}
		}
		if err := dl.Attrs.Validate(); err != nil {
			return nil, &DecodeError{Format: FormatLinkFormat, Offset: -1, Record: i, Field: "attributes", Err: err}
		}
		out = append(out, dl)
	}
	return out, nil
}

func (dl *DiscoverLink) setParam(p LinkParam) error {
	switch p.Name {
	case "ver":
		if p.NoValue || !isVersion(p.Value) {
			return fmt.Errorf("%w: ver %q is not MAJOR.MINOR", ErrMalformed, p.Value)
		}
		dl.Version = p.Value
		return nil
	case "dim", "ssid":
		v, err := strconv.ParseUint(p.Value, 10, 16)
		if p.NoValue || err != nil {
			return fmt.Errorf("%w: %s %q is not an integer 0..65535", ErrMalformed, p.Name, p.Value)
		}
		if p.Name == "dim" {
			dl.Dim = AttrUint(v)
		} else {
			dl.SSID = AttrUint(v)
		}
		return nil
	case "uri":
		dl.URI = p.Value
		return nil
	}
	if isAttrName(p.Name) {
		if p.NoValue {
			return fmt.Errorf("%w: %s without a value", ErrInvalidAttributes, p.Name)
		}
		_, err := dl.Attrs.set(p.Name, p.Value, true)
		return err
	}
	dl.Other = append(dl.Other, p)
	return nil
}

// Link returns the discover link as a generic link.
func (dl DiscoverLink) Link() Link {
	var params []LinkParam
	if dl.Version != "" {
		params = append(params, LinkParam{Name: "ver", Value: dl.Version})
	}
	if dl.Dim.IsSet() {
		params = append(params, LinkParam{Name: "dim", Value: strconv.FormatUint(dl.Dim.Value, 10)})
	}
	if dl.SSID.IsSet() {
		params = append(params, LinkParam{Name: "ssid", Value: strconv.FormatUint(dl.SSID.Value, 10)})
	}
	if dl.URI != "" {
		params = append(params, LinkParam{Name: "uri", Value: dl.URI, Quoted: true})
	}
	dl.Attrs.each(func(name string, state AttrState, value string) {
		if state == AttrSet {
			params = append(params, LinkParam{Name: name, Value: value})
		}
	})
	params = append(params, dl.Other...)
	return Link{Target: dl.Path.String(), Params: params}
}

// FormatDiscover writes a Discover answer.
func FormatDiscover(links []DiscoverLink) []byte {
	ls := make([]Link, len(links))
	for i, dl := range links {
		ls[i] = dl.Link()
	}
	return FormatLinks(ls)
}
