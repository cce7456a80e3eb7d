package streammeta

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// OnlyArch returns the shipped document with every architecture but arch removed from its
// "architectures" object and every other byte as shipped: the images section, keys this program
// does not know and the formatting survive. A release directory holds one architecture, and a
// real stream holds four.
func (r *Release) OnlyArch(arch string) ([]byte, error) {
	if _, ok := r.Stream.Architectures[arch]; !ok {
		return nil, fmt.Errorf("%w: no architecture %q (the stream has %v)", ErrInvalid, arch, r.Arches())
	}
	open, members, closing, err := archMembers(r.Raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var kept *member
	for i := range members {
		if members[i].key == arch {
			kept = &members[i]
		}
	}
	if kept == nil {
		return nil, fmt.Errorf("%w: no architecture %q in the document", ErrInvalid, arch)
	}
	var out bytes.Buffer
	out.Write(r.Raw[:open])                               // up to and including the '{' of architectures
	out.Write(r.Raw[open:members[0].start])               // the whitespace before the first member
	out.Write(r.Raw[kept.start:kept.end])                 // "arch": {...}
	out.Write(r.Raw[members[len(members)-1].end:closing]) // the whitespace before the '}'
	out.Write(r.Raw[closing:])
	return out.Bytes(), nil
}

type member struct {
	key        string
	start, end int // from the key's opening quote to the end of its value
}

// archMembers finds, in a stream document, the offset just after the '{' of the top-level
// "architectures" object, its members' spans and the offset of its closing '}'.
func archMembers(raw []byte) (open int, members []member, closing int, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, nil, 0, fmt.Errorf("the document is not a JSON object")
	}
	found := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, nil, 0, err
		}
		if t != "architectures" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return 0, nil, 0, err
			}
			continue
		}
		// Decoders disagree on repeated keys (the last one wins in encoding/json): refuse.
		if found {
			return 0, nil, 0, fmt.Errorf("architectures appears twice")
		}
		found = true
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return 0, nil, 0, fmt.Errorf("architectures is not an object")
		}
		open = int(dec.InputOffset())
		keys := map[string]bool{}
		for dec.More() {
			prev := int(dec.InputOffset())
			t, err := dec.Token()
			if err != nil {
				return 0, nil, 0, err
			}
			key, _ := t.(string)
			if keys[key] {
				return 0, nil, 0, fmt.Errorf("architecture %q appears twice", key)
			}
			keys[key] = true
			// The key's quote is the first '"' after the previous value (past ',' and spaces).
			start := prev + bytes.IndexByte(raw[prev:], '"')
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return 0, nil, 0, err
			}
			members = append(members, member{key: key, start: start, end: int(dec.InputOffset())})
		}
		closing = int(dec.InputOffset()) + bytes.IndexByte(raw[dec.InputOffset():], '}')
		if _, err := dec.Token(); err != nil { // the '}'
			return 0, nil, 0, err
		}
		if len(members) == 0 {
			return 0, nil, 0, fmt.Errorf("architectures is empty")
		}
	}
	if !found {
		return 0, nil, 0, fmt.Errorf("no architectures object")
	}
	return open, members, closing, nil
}
