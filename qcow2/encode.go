package qcow2

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Encode writes the qcow2 file described by l, in host order, taking the
// contents of data clusters from guest, the sequential guest view (virtual
// size l.Header.Size; it needs to reach only the end of the last data run).
// Given the Layout of an image and that image's guest view, it reproduces the
// image byte for byte.
//
// Encode streams: data runs taken in host order must be in ascending guest
// order (as qemu-img convert writes them), otherwise it fails with
// ErrUnsupported. If guest implements io.Seeker, guest ranges between runs are
// skipped with Seek instead of being read.
func Encode(w io.Writer, guest io.Reader, l *Layout) error {
	p, err := l.plan()
	if err != nil {
		return err
	}
	var prev *Run
	for _, o := range p.objs {
		if o.kind != objData {
			continue
		}
		r := &l.Data[o.idx]
		if prev != nil && r.Guest < prev.Guest+prev.Count {
			return fmt.Errorf("%w: encode: data run for guest cluster %d (host cluster %d) comes after guest cluster %d in host order; runs must ascend in guest order", ErrUnsupported, r.Guest, r.Host, prev.Guest)
		}
		prev = r
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	s := &encodeSink{w: bw, guest: guest, buf: make([]byte, 1<<20)}
	if sk, ok := guest.(io.Seeker); ok {
		if _, err := sk.Seek(0, io.SeekCurrent); err == nil {
			s.seeker = sk
		}
	}
	if err := p.walk(s); err != nil {
		return err
	}
	return bw.Flush()
}

type encodeSink struct {
	w      *bufio.Writer
	guest  io.Reader
	seeker io.Seeker
	gpos   int64 // guest offset of the next byte guest returns
	buf    []byte
}

func (s *encodeSink) meta(host int64, b []byte, what string) error {
	_, err := s.w.Write(b)
	return err
}

var zeroBuf = make([]byte, 1<<16)

func (s *encodeSink) zeros(host, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroBuf)))
		if _, err := s.w.Write(zeroBuf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func (s *encodeSink) data(host, guest, n int64) error {
	if guest < s.gpos {
		return fmt.Errorf("%w: encode: guest offset 0x%x needed after 0x%x", ErrUnsupported, guest, s.gpos)
	}
	if skip := guest - s.gpos; skip > 0 {
		if s.seeker != nil {
			if _, err := s.seeker.Seek(skip, io.SeekCurrent); err != nil {
				return fmt.Errorf("qcow2: encode: skip guest data to 0x%x: %w", guest, err)
			}
		} else if m, err := io.CopyN(io.Discard, s.guest, skip); err != nil {
			return s.short(s.gpos+m, guest+n, err)
		}
		s.gpos = guest
	}
	for n > 0 {
		k := min(n, int64(len(s.buf)))
		m, err := io.ReadFull(s.guest, s.buf[:k])
		if err != nil {
			return s.short(s.gpos+int64(m), guest+n, err)
		}
		if _, err := s.w.Write(s.buf[:k]); err != nil {
			return err
		}
		s.gpos += k
		guest += k
		n -= k
	}
	return nil
}

func (s *encodeSink) short(at, want int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("qcow2: encode: guest data ends at offset 0x%x, need up to 0x%x: %w", at, want, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("qcow2: encode: read guest at 0x%x: %w", at, err)
}
