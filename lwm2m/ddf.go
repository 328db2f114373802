package lwm2m

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The built-in models are generated from the OMA registry's DDF files; the
// generator uses LoadDDF below, so built-in and user-added models are read
// the same way.
//go:generate go run ./internal/modelgen -registry ../../shared/lwm2m-registry -o builtin_models.go

// ErrNotDDF marks an XML document that is not an object definition: its root
// element is not <LWM2M> (the registry's index DDF.xml has <DDFList>).
var ErrNotDDF = errors.New("not an LwM2M object definition (DDF)")

// maxDDFSize bounds what LoadDDF reads; the largest registry file is well
// under 1 MiB.
const maxDDFSize = 8 << 20

// The DDF XML schema (OMA LWM2M.xsd / LWM2M-v1_1.xsd; Core Appendix D).
type ddfRoot struct {
	XMLName xml.Name    `xml:"LWM2M"`
	Objects []ddfObject `xml:"Object"`
}

type ddfObject struct {
	ObjectType        string    `xml:"ObjectType,attr"`
	Name              string    `xml:"Name"`
	Description1      string    `xml:"Description1"`
	ObjectID          string    `xml:"ObjectID"`
	ObjectURN         string    `xml:"ObjectURN"`
	LWM2MVersion      string    `xml:"LWM2MVersion"`
	ObjectVersion     string    `xml:"ObjectVersion"`
	MultipleInstances string    `xml:"MultipleInstances"`
	Mandatory         string    `xml:"Mandatory"`
	Items             []ddfItem `xml:"Resources>Item"`
}

type ddfItem struct {
	ID                string `xml:"ID,attr"`
	Name              string `xml:"Name"`
	Operations        string `xml:"Operations"`
	MultipleInstances string `xml:"MultipleInstances"`
	Mandatory         string `xml:"Mandatory"`
	Type              string `xml:"Type"`
	RangeEnumeration  string `xml:"RangeEnumeration"`
	Units             string `xml:"Units"`
	Description       string `xml:"Description"`
}

// LoadDDF reads an OMA DDF XML document (an <LWM2M> root holding one or more
// <Object> definitions, Core Appendix D) and returns its object models.
// Errors name the element that is wrong ("Object 3: Item ID=\"7\": Type: …").
// A document whose root is not <LWM2M> gives an error wrapping ErrNotDDF.
func LoadDDF(r io.Reader) ([]*ObjectModel, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxDDFSize+1))
	if err != nil {
		return nil, fmt.Errorf("ddf: read: %w", err)
	}
	if len(data) > maxDDFSize {
		return nil, fmt.Errorf("ddf: document larger than %d bytes", maxDDFSize)
	}
	root, err := ddfRootElement(data)
	if err != nil {
		return nil, err
	}
	if root != "LWM2M" {
		return nil, fmt.Errorf("ddf: root element <%s>: %w", root, ErrNotDDF)
	}
	var doc ddfRoot
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("ddf: LWM2M: %w", err)
	}
	if len(doc.Objects) == 0 {
		return nil, fmt.Errorf("ddf: LWM2M: no <Object> element")
	}
	out := make([]*ObjectModel, 0, len(doc.Objects))
	for i := range doc.Objects {
		m, err := doc.Objects[i].model()
		if err != nil {
			where := fmt.Sprintf("Object[%d]", i+1)
			if id := strings.TrimSpace(doc.Objects[i].ObjectID); id != "" {
				where = "Object " + id
			}
			return nil, fmt.Errorf("ddf: %s: %w", where, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// ddfRootElement returns the local name of the document's root element.
func ddfRootElement(data []byte) (string, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return "", fmt.Errorf("ddf: no root element")
			}
			return "", fmt.Errorf("ddf: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local, nil
		}
	}
}

func (o *ddfObject) model() (*ObjectModel, error) {
	id, err := ddfID("ObjectID", o.ObjectID)
	if err != nil {
		return nil, err
	}
	m := &ObjectModel{
		ID:           id,
		Name:         strings.TrimSpace(o.Name),
		Description:  strings.TrimSpace(o.Description1),
		URN:          strings.TrimSpace(o.ObjectURN),
		Version:      strings.TrimSpace(o.ObjectVersion),
		LwM2MVersion: strings.TrimSpace(o.LWM2MVersion),
		Resources:    make(map[uint16]*ResourceModel, len(o.Items)),
	}
	if m.Name == "" {
		return nil, fmt.Errorf("Name: empty")
	}
	if m.Version == "" {
		m.Version = "1.0"
	}
	if m.LwM2MVersion == "" {
		m.LwM2MVersion = "1.0"
	}
	if m.Multiple, err = ddfMultiple("MultipleInstances", o.MultipleInstances); err != nil {
		return nil, err
	}
	if m.Mandatory, err = ddfMandatory("Mandatory", o.Mandatory); err != nil {
		return nil, err
	}
	for i := range o.Items {
		it := &o.Items[i]
		rm, err := it.model()
		if err != nil {
			if strings.TrimSpace(it.ID) == "" {
				return nil, fmt.Errorf("Resources/Item[%d]: %w", i+1, err)
			}
			return nil, fmt.Errorf("Item ID=%q: %w", it.ID, err)
		}
		if _, dup := m.Resources[rm.ID]; dup {
			return nil, fmt.Errorf("Item ID=%q: duplicate resource id", it.ID)
		}
		m.Resources[rm.ID] = rm
	}
	return m, nil
}

func (it *ddfItem) model() (*ResourceModel, error) {
	id, err := ddfID("ID", it.ID)
	if err != nil {
		return nil, err
	}
	r := &ResourceModel{
		ID:          id,
		Name:        strings.TrimSpace(it.Name),
		Range:       strings.TrimSpace(it.RangeEnumeration),
		Units:       strings.TrimSpace(it.Units),
		Description: strings.TrimSpace(it.Description),
	}
	if r.Name == "" {
		return nil, fmt.Errorf("Name: empty")
	}
	if r.Operations, err = ParseOperations(it.Operations); err != nil {
		return nil, fmt.Errorf("Operations: %w", err)
	}
	if r.Multiple, err = ddfMultiple("MultipleInstances", it.MultipleInstances); err != nil {
		return nil, err
	}
	if r.Mandatory, err = ddfMandatory("Mandatory", it.Mandatory); err != nil {
		return nil, err
	}
	if r.Type, err = ParseDataType(it.Type); err != nil {
		return nil, fmt.Errorf("Type: %w", err)
	}
	if r.Type == TypeNone && r.Operations&(OpRead|OpWrite) != 0 {
		return nil, fmt.Errorf("Type: empty for a readable or writable resource (operations %q)", strings.TrimSpace(it.Operations))
	}
	return r, nil
}

// ParseOperations parses a DDF <Operations> value: any of R, W and E
// ("RW", "E", or empty for none).
func ParseOperations(s string) (Operations, error) {
	var ops Operations
	for _, c := range strings.TrimSpace(s) {
		var o Operations
		switch c {
		case 'R', 'r':
			o = OpRead
		case 'W', 'w':
			o = OpWrite
		case 'E', 'e':
			o = OpExecute
		default:
			return 0, fmt.Errorf("%w: %q is not a combination of R, W and E", ErrMalformed, s)
		}
		if ops&o != 0 {
			return 0, fmt.Errorf("%w: %q repeats %c", ErrMalformed, s, c)
		}
		ops |= o
	}
	return ops, nil
}

func ddfID(field, s string) (uint16, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%s: missing", field)
	}
	v, err := strconv.ParseUint(t, 10, 16)
	if err != nil || v > MaxID {
		return 0, fmt.Errorf("%s: %q is not an id 0..%d", field, s, MaxID)
	}
	return uint16(v), nil
}

func ddfMultiple(field, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "multiple":
		return true, nil
	case "single":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q is neither Single nor Multiple", field, s)
}

func ddfMandatory(field, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "mandatory":
		return true, nil
	case "optional":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q is neither Mandatory nor Optional", field, s)
}

// LoadDDFFile loads the object models of one DDF XML file into the registry,
// replacing models of the same ids, and returns them.
func (r *Registry) LoadDDFFile(path string) ([]*ObjectModel, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	models, err := LoadDDF(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := r.Add(models...); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return models, nil
}

// LoadDDFDir loads every *.xml file of a directory (not its subdirectories)
// in name order, as LoadDDFFile does. A file that fails does not stop the
// others: the models of the good files are added and returned, and the error
// joins one error per bad file. Files that are not object definitions (such
// as the registry's index DDF.xml) are skipped.
func (r *Registry) LoadDDFDir(dir string) ([]*ObjectModel, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".xml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var all []*ObjectModel
	var errs []error
	for _, n := range names {
		models, err := r.LoadDDFFile(filepath.Join(dir, n))
		if err != nil {
			if errors.Is(err, ErrNotDDF) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		all = append(all, models...)
	}
	return all, errors.Join(errs...)
}
