package vmdk

import "fmt"

// CanEncode reports whether this build can run Encode and Verify: nil with
// cgo (zlib linked in), else an error wrapping ErrUnsupported that says so.
func CanEncode() error {
	if !zlibAvailable {
		return errNoZlib
	}
	return nil
}

// EncoderDeflate names the deflate Encode uses in this build, with zlib's
// version ("zlib-1.2.13 level 6"), or "" without cgo.
func EncoderDeflate() string {
	if !zlibAvailable {
		return ""
	}
	return fmt.Sprintf("zlib-%s level 6", zlibVersion())
}

// Validate checks that Encode can write the image p describes (in a build
// with cgo): a layout it reproduces, a consistent header, descriptor and
// grain map.
func (p *Params) Validate() error {
	if _, err := p.check(); err != nil {
		return err
	}
	_, err := p.deflateLevel()
	return err
}
