package lzmarepro

import (
	"bytes"
	"errors"
	"fmt"
)

// Extreme is the preset flag of `xz -e` (LZMA_PRESET_EXTREME); mkfs.erofs's levels 100-109.
const Extreme = 1 << 31

// ErrNoCgo is wrapped by every error of a build without cgo.
var ErrNoCgo = fmt.Errorf("lzmarepro: built without cgo: cannot re-encode LZMA; rebuild with CGO_ENABLED=1: %w", errors.ErrUnsupported)

// Params are the MicroLZMA encoder settings of a cluster.
type Params struct {
	// Preset is the liblzma preset (0-9, possibly |Extreme): mkfs.erofs -zlzma,level=N.
	Preset uint32
	// DictSize is the dictionary size (mkfs.erofs: dictsize=, 8 MiB by default, recorded in the
	// superblock's LZMA config).
	DictSize uint32
	// Props is the lc/lp/pb byte ((pb*5+lp)*9+lc); the first byte of a MicroLZMA stream holds
	// its complement. Presets give 0x5d (lc 3, lp 0, pb 2).
	Props byte
}

// PresetProps is the properties byte every liblzma preset uses (lc 3, lp 0, pb 2).
const PresetProps = (2*5+0)*9 + 3

func (p Params) String() string {
	return fmt.Sprintf("preset %s, dict %d, props %#02x", presetString(p.Preset), p.DictSize, p.Props)
}

func presetString(p uint32) string {
	s := fmt.Sprint(p &^ Extreme)
	if p&Extreme != 0 {
		s += "e"
	}
	return s
}

func (p Params) check() error {
	if p.Preset&^Extreme > 9 {
		return fmt.Errorf("lzmarepro: preset %d out of range 0-9", p.Preset&^Extreme)
	}
	if p.DictSize < 4096 || p.DictSize > 1<<30 {
		return fmt.Errorf("lzmarepro: dictionary size %d out of range 4 KiB-1 GiB", p.DictSize)
	}
	if p.Props >= 9*5*5 {
		return fmt.Errorf("lzmarepro: properties byte %#x out of range", p.Props)
	}
	lc, lp := p.Props%9, p.Props/9%5
	if lc+lp > 4 {
		return fmt.Errorf("lzmarepro: properties byte %#x has lc+lp > 4", p.Props)
	}
	return nil
}

// StreamProps returns the properties byte of a MicroLZMA stream (its first byte, negated).
func StreamProps(stream []byte) (byte, bool) {
	if len(stream) == 0 {
		return 0, false
	}
	p := ^stream[0]
	return p, p < 9*5*5
}

// Presets lists the presets a detector tries, most likely first: mkfs.erofs's and xz's
// default (6), the strongest (9), then the others and their extreme forms.
var Presets = []uint32{6, 9, 0, 1, 2, 3, 4, 5, 7, 8,
	6 | Extreme, 9 | Extreme, 0 | Extreme, 1 | Extreme, 2 | Extreme, 3 | Extreme, 4 | Extreme, 5 | Extreme, 7 | Extreme, 8 | Extreme}

// probeLimit is the output size of a quick test: a few KiB of output show a wrong preset or
// dictionary at a fraction of the cost of a whole cluster.
const probeLimit = 4096

// probeSlack is how many bytes at the end of a limited encoding may differ from the longer
// one: the range coder's flush and a pending carry.
const probeSlack = 16

// Probe tells whether encoding in with p could give stream: it encodes only the first
// probeLimit bytes of output (the encoder's choices do not depend on its output limit, so they
// are a prefix of the whole cluster's) and compares them. A true answer still needs
// Reproduces; a false one is final.
func (e *Encoder) Probe(in, stream []byte, p Params) (bool, error) {
	if len(stream) <= probeLimit+probeSlack {
		return e.Reproduces(in, stream, -1, p)
	}
	out, _, err := e.MicroLZMA(in, probeLimit, p)
	if err != nil {
		return false, err
	}
	n := max(len(out)-probeSlack, 0)
	return n > 0 && bytes.Equal(out[:n], stream[:n]), nil
}

// Reproduces tells whether encoding in with p and an output limit of len(stream) gives stream
// and takes consumed bytes of in (any number when consumed < 0).
func (e *Encoder) Reproduces(in, stream []byte, consumed int, p Params) (bool, error) {
	out, n, err := e.MicroLZMA(in, max(len(stream), 6), p)
	if err != nil {
		return false, err
	}
	return (consumed < 0 || n == consumed) && bytes.Equal(out, stream), nil
}
