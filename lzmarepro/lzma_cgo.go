//go:build cgo

package lzmarepro

/*
#cgo linux LDFLAGS: -l:liblzma.a
#cgo !linux LDFLAGS: -llzma
#include <stdlib.h>
#include <string.h>
#include <lzma.h>

static lzma_stream *rh_new(void) {
	lzma_stream *s = malloc(sizeof(lzma_stream));
	if (s) {
		lzma_stream init = LZMA_STREAM_INIT;
		*s = init;
	}
	return s;
}

static void rh_free(lzma_stream *s) {
	lzma_end(s);
	free(s);
}

// rh_options fills the LZMA1 options of a preset, then the dictionary size and lc/lp/pb.
static int rh_options(lzma_options_lzma *o, uint32_t preset, uint32_t dict, unsigned props) {
	if (lzma_lzma_preset(o, preset))
		return LZMA_OPTIONS_ERROR;
	o->dict_size = dict;
	o->lc = props % 9;
	o->lp = props / 9 % 5;
	o->pb = props / 45;
	return LZMA_OK;
}

// rh_micro_encode encodes as much of in as fits in cap bytes of output, as mkfs.erofs does:
// a fresh MicroLZMA encoder on the stream, one lzma_code(LZMA_FINISH).
static int rh_micro_encode(lzma_stream *s, uint32_t preset, uint32_t dict, unsigned props,
		const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *consumed, size_t *produced) {
	lzma_options_lzma o;
	int r = rh_options(&o, preset, dict, props);
	if (r != LZMA_OK)
		return r;
	r = lzma_microlzma_encoder(s, &o);
	if (r != LZMA_OK)
		return r;
	s->next_in = in;
	s->avail_in = n;
	s->next_out = out;
	s->avail_out = cap;
	r = lzma_code(s, LZMA_FINISH);
	*consumed = s->total_in;
	*produced = s->total_out;
	// The stream must not keep Go pointers after the call.
	s->next_in = NULL;
	s->next_out = NULL;
	s->avail_in = s->avail_out = 0;
	return r == LZMA_STREAM_END ? LZMA_OK : (r == LZMA_OK ? LZMA_BUF_ERROR : r);
}

static int rh_micro_decode(lzma_stream *s, const uint8_t *in, size_t n, uint8_t *out, size_t m, uint32_t dict) {
	int r = lzma_microlzma_decoder(s, n, m, 1, dict);
	if (r != LZMA_OK)
		return r;
	s->next_in = in;
	s->avail_in = n;
	s->next_out = out;
	s->avail_out = m;
	r = lzma_code(s, LZMA_FINISH);
	size_t left = s->avail_out;
	s->next_in = NULL;
	s->next_out = NULL;
	s->avail_in = s->avail_out = 0;
	if (r == LZMA_STREAM_END && left == 0)
		return LZMA_OK;
	return r == LZMA_OK || r == LZMA_STREAM_END ? LZMA_DATA_ERROR : r;
}

static int rh_xz_encoder(lzma_stream *s, uint32_t preset, int check, uint32_t threads, uint64_t block) {
	if (threads == 0)
		return lzma_easy_encoder(s, preset, check);
	lzma_mt mt;
	memset(&mt, 0, sizeof(mt));
	mt.threads = threads;
	mt.block_size = block;
	mt.preset = preset;
	mt.check = check;
	return lzma_stream_encoder_mt(s, &mt);
}

static int rh_xz_decoder(lzma_stream *s) {
	return lzma_stream_decoder(s, UINT64_MAX, 0);
}

// rh_code runs lzma_code once over the given buffers and says how much of each it used.
static int rh_code(lzma_stream *s, const uint8_t *in, size_t n, uint8_t *out, size_t cap, int finish,
		size_t *used, size_t *produced) {
	s->next_in = in;
	s->avail_in = n;
	s->next_out = out;
	s->avail_out = cap;
	int r = lzma_code(s, finish ? LZMA_FINISH : LZMA_RUN);
	*used = n - s->avail_in;
	*produced = cap - s->avail_out;
	s->next_in = NULL;
	s->next_out = NULL;
	s->avail_in = s->avail_out = 0;
	return r;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// haveLZMA says whether this build can re-encode LZMA.
const haveLZMA = true

// Version is the liblzma this build re-encodes with ("5.4.1"), or "" without cgo.
func Version() string { return C.GoString(C.lzma_version_string()) }

func lzmaErr(r C.int) string {
	switch r {
	case C.LZMA_MEM_ERROR:
		return "out of memory"
	case C.LZMA_OPTIONS_ERROR:
		return "unsupported options"
	case C.LZMA_DATA_ERROR:
		return "corrupt data"
	case C.LZMA_BUF_ERROR:
		return "no progress (output full or input cut)"
	case C.LZMA_FORMAT_ERROR:
		return "not the expected format"
	case C.LZMA_PROG_ERROR:
		return "programming error (bad arguments)"
	case C.LZMA_MEMLIMIT_ERROR:
		return "memory limit reached"
	}
	return fmt.Sprintf("liblzma error %d", int(r))
}

func ptr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// Encoder is one liblzma stream, reused from call to call (as mkfs.erofs reuses its own, so
// its tables are allocated once); not safe for concurrent use.
type Encoder struct {
	s   *C.lzma_stream
	out []byte
}

// NewEncoder returns an encoder; Close frees its memory (about 100 MiB at preset 6, most of it
// touched only as far as inputs reach).
func NewEncoder() (*Encoder, error) {
	s := C.rh_new()
	if s == nil {
		return nil, fmt.Errorf("lzmarepro: out of memory")
	}
	return &Encoder{s: s}, nil
}

// Close frees the encoder's liblzma memory.
func (e *Encoder) Close() {
	if e != nil && e.s != nil {
		C.rh_free(e.s)
		e.s = nil
	}
}

// MicroLZMA encodes the longest prefix of in that fits in limit bytes of output, exactly as
// mkfs.erofs's compress_destsize does: it returns the stream (valid until the next call) and
// how many bytes of in it holds. Bytes after that prefix matter too: the encoder looks ahead.
func (e *Encoder) MicroLZMA(in []byte, limit int, p Params) (stream []byte, consumed int, err error) {
	if err := p.check(); err != nil {
		return nil, 0, err
	}
	if limit < 6 || limit > 64<<20 {
		return nil, 0, fmt.Errorf("lzmarepro: microlzma output limit %d out of range", limit)
	}
	if cap(e.out) < limit {
		e.out = make([]byte, limit)
	}
	out := e.out[:limit]
	var used, produced C.size_t
	r := C.rh_micro_encode(e.s, C.uint32_t(p.Preset), C.uint32_t(p.DictSize), C.unsigned(p.Props),
		ptr(in), C.size_t(len(in)), ptr(out), C.size_t(limit), &used, &produced)
	if r != C.LZMA_OK {
		return nil, 0, fmt.Errorf("lzmarepro: microlzma encode (%s): %s", p, lzmaErr(r))
	}
	return out[:int(produced)], int(used), nil
}

// DecodeMicroLZMA decodes a MicroLZMA stream to exactly len(out) bytes. dictSize may be the
// one the encoder used or more.
func (e *Encoder) DecodeMicroLZMA(out, stream []byte, dictSize uint32) error {
	if len(stream) == 0 || len(out) == 0 {
		return fmt.Errorf("lzmarepro: microlzma decode: empty stream or output")
	}
	dict := max(uint32(4096), min(dictSize, uint32(min(len(out), 1<<30))))
	r := C.rh_micro_decode(e.s, ptr(stream), C.size_t(len(stream)), ptr(out), C.size_t(len(out)), C.uint32_t(dict))
	if r != C.LZMA_OK {
		return fmt.Errorf("lzmarepro: microlzma decode of %d bytes into %d: %s", len(stream), len(out), lzmaErr(r))
	}
	return nil
}

// xzCoder is a streaming liblzma coder for the .xz code in xz.go.
type xzCoder struct{ s *C.lzma_stream }

func newXZEncoder(o XZOptions) (*xzCoder, error) {
	s := C.rh_new()
	if s == nil {
		return nil, fmt.Errorf("lzmarepro: out of memory")
	}
	r := C.rh_xz_encoder(s, C.uint32_t(o.Preset), C.int(o.Check), C.uint32_t(o.Threads), C.uint64_t(o.BlockSize))
	if r != C.LZMA_OK {
		C.rh_free(s)
		return nil, fmt.Errorf("lzmarepro: xz encoder (%s): %s", o, lzmaErr(r))
	}
	return &xzCoder{s: s}, nil
}

func newXZDecoder() (*xzCoder, error) {
	s := C.rh_new()
	if s == nil {
		return nil, fmt.Errorf("lzmarepro: out of memory")
	}
	if r := C.rh_xz_decoder(s); r != C.LZMA_OK {
		C.rh_free(s)
		return nil, fmt.Errorf("lzmarepro: xz decoder: %s", lzmaErr(r))
	}
	return &xzCoder{s: s}, nil
}

func (c *xzCoder) close() {
	if c.s != nil {
		C.rh_free(c.s)
		c.s = nil
	}
}

// code runs liblzma once; end is true at the stream's end.
func (c *xzCoder) code(in, out []byte, finish bool) (used, produced int, end bool, err error) {
	var u, p C.size_t
	f := C.int(0)
	if finish {
		f = 1
	}
	r := C.rh_code(c.s, ptr(in), C.size_t(len(in)), ptr(out), C.size_t(len(out)), f, &u, &p)
	switch r {
	case C.LZMA_OK:
		return int(u), int(p), false, nil
	case C.LZMA_STREAM_END:
		return int(u), int(p), true, nil
	case C.LZMA_BUF_ERROR:
		if int(u) > 0 || int(p) > 0 {
			return int(u), int(p), false, nil
		}
	}
	return int(u), int(p), false, fmt.Errorf("lzmarepro: xz: %s", lzmaErr(r))
}
