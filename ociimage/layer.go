package ociimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/rehydrator/rehydrator/internal/ctxio"
)

// Compression says how layers are compressed.
type Compression struct {
	// Algo is "zstd" (the default when empty) or "gzip".
	Algo string
	// Level is the algorithm's level (zstd 1..22, mapped onto the Go encoder's four speeds;
	// gzip 1..9); 0 is the encoder's default. Ignored with Command.
	Level int
	// Command, when set, compresses each layer with an external program instead of the Go
	// encoder: the layer's tar goes to its stdin and the compressed layer comes from its
	// stdout, for example {"zstd", "-19", "--long=27", "-T0", "-c"} or {"pigz", "-9", "-n", "-c"}.
	// The output must be a standard Algo stream and the same input must give the same bytes
	// (true of zstd, including -T0, and of gzip -n). It is checked by decompressing it once.
	// Windows above 2 GiB (zstd --long=31) cannot be read back by rehydrate.
	Command []string
}

const (
	algoZstd = "zstd"
	algoGzip = "gzip"
)

// maxZstdWindow is what readers accept: it allows zstd --long up to 31.
const maxZstdWindow = 1 << 31

func (c Compression) algo() string {
	if c.Algo == "" {
		return algoZstd
	}
	return c.Algo
}

func (c Compression) validate() error {
	switch c.algo() {
	case algoZstd:
		if c.Level < 0 || c.Level > 22 {
			return fmt.Errorf("compression: zstd level %d: want 1..22 (0 for the default)", c.Level)
		}
	case algoGzip:
		if c.Level < 0 || c.Level > 9 {
			return fmt.Errorf("compression: gzip level %d: want 1..9 (0 for the default)", c.Level)
		}
	default:
		return fmt.Errorf("compression: unknown algorithm %q: want zstd or gzip", c.Algo)
	}
	if len(c.Command) > 0 {
		if _, err := exec.LookPath(c.Command[0]); err != nil {
			return fmt.Errorf("compression command %q: %w", c.Command[0], err)
		}
	}
	return nil
}

func (c Compression) mediaType() types.MediaType {
	if c.algo() == algoGzip {
		return types.OCILayer
	}
	return types.OCILayerZStd
}

// fileLayer is a layer compressed once into a file whose digests and sizes were computed in
// the same pass, so that go-containerregistry never has to read it to learn them.
type fileLayer struct {
	path      string
	digest    v1.Hash
	diffID    v1.Hash
	size      int64
	mediaType types.MediaType
}

var _ v1.Layer = (*fileLayer)(nil)

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return l.mediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return openLayerFile(l.path) }

// openLayerFile opens a compressed layer file and decompresses it.
func openLayerFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return decompress(f)
}

// compressLayer writes the tar produced by writeTar, compressed, into a new file in dir,
// computing the layer's diffID (sha256 of the tar), digest and size on the way.
func (c Compression) compressLayer(ctx context.Context, dir string, writeTar func(io.Writer) error) (_ *fileLayer, err error) {
	f, err := os.CreateTemp(dir, "layer-*"+c.fileSuffix())
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()

	out := newHashingWriter(bufio.NewWriterSize(f, 1<<20))
	tarHash := sha256.New()
	if len(c.Command) > 0 {
		// The slot is held until the layer has been read back too: decoding a --long=27
		// frame takes a 128 MiB window, which must not meet another one or a running zstd.
		select {
		case commandSlots <- struct{}{}:
			defer func() { <-commandSlots }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		err = c.runCommand(ctx, out, tarHash, writeTar)
	} else {
		err = c.encode(ctx, out, tarHash, writeTar)
	}
	if err != nil {
		return nil, err
	}
	if err := out.w.(*bufio.Writer).Flush(); err != nil {
		return nil, err
	}
	l := &fileLayer{
		path:      f.Name(),
		digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(out.h.Sum(nil))},
		diffID:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(tarHash.Sum(nil))},
		size:      out.n,
		mediaType: c.mediaType(),
	}
	if len(c.Command) > 0 {
		// An external program can be misconfigured (wrong format, missing -c, a filter that
		// changes data): prove the layer reads back to the tar we gave it.
		if err := checkLayerFile(ctx, f.Name(), c.algo(), l.diffID); err != nil {
			return nil, fmt.Errorf("compression command %q: %w", strings.Join(c.Command, " "), err)
		}
	}
	return l, nil
}

func (c Compression) fileSuffix() string {
	if c.algo() == algoGzip {
		return ".tar.gz"
	}
	return ".tar.zst"
}

func (c Compression) encode(ctx context.Context, out io.Writer, tarHash hash.Hash, writeTar func(io.Writer) error) error {
	var enc io.WriteCloser
	switch c.algo() {
	case algoGzip:
		level := gzip.DefaultCompression
		if c.Level != 0 {
			level = c.Level
		}
		w, err := gzip.NewWriterLevel(out, level)
		if err != nil {
			return err
		}
		enc = w
	default:
		level := zstd.SpeedDefault
		if c.Level != 0 {
			level = zstd.EncoderLevelFromZstd(c.Level)
		}
		// Stream encoding (without WithConcurrentBlocks) gives the same bytes whatever the
		// concurrency and write sizes (checked in tests), and keeps memory near 40 MB per
		// layer; concurrent blocks were no faster on the 2-core machines here and took 250-650 MB.
		// Callers who want every core use Command with zstd -T0.
		w, err := zstd.NewWriter(out, zstd.WithEncoderLevel(level))
		if err != nil {
			return err
		}
		enc = w
	}
	if err := writeTar(io.MultiWriter(ctxio.Writer(ctx, enc), tarHash)); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

// commandSlots bounds how many external compressors, and the checks of their output, run at
// once. One `zstd -19 --long=27 --single-thread` holds its 128 MiB window and match tables (about
// 220 MiB); reading its output back takes a 128 MiB window in this process. Doing one at a time
// keeps build's peak memory within budget whatever the number of layers (small layers still
// go quickly: their programs finish at once).
var commandSlots = make(chan struct{}, 1)

// runCommand runs c.Command with the tar on its stdin; the caller holds a commandSlot.
func (c Compression) runCommand(ctx context.Context, out io.Writer, tarHash hash.Hash, writeTar func(io.Writer) error) error {
	cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
	cmd.Stdout = out
	stderr := &limitedBuffer{max: 4096}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("compression command %q: %w", c.Command[0], err)
	}
	werr := writeTar(io.MultiWriter(stdin, tarHash))
	if cerr := stdin.Close(); werr == nil {
		werr = cerr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("compression command %q: %w: %s", strings.Join(c.Command, " "), err, strings.TrimSpace(stderr.String()))
	}
	if werr != nil {
		return fmt.Errorf("compression command %q: writing its input: %w", strings.Join(c.Command, " "), werr)
	}
	return nil
}

// checkDecoder reads back the layers of external zstd commands; guarded by commandSlots.
var checkDecoder *zstd.Decoder

// checkLayerFile decompresses a layer file and compares the tar's sha256 with diffID. The
// caller holds a commandSlot.
func checkLayerFile(ctx context.Context, path, algo string, diffID v1.Hash) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	if got := sniff(magic); got != algo {
		if got == "" {
			got = "not compressed"
		}
		return fmt.Errorf("output is %s, want %s", got, algo)
	}
	var r io.Reader
	if algo == algoZstd {
		// One decoder serves every check (they run one at a time, under a commandSlot): a
		// --long=27 frame needs a 128 MiB window, allocated once here rather than per layer
		// (a new one before the garbage collector freed the last took the heap to 264 MB).
		if checkDecoder == nil {
			if checkDecoder, err = zstd.NewReader(nil, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1)); err != nil {
				return err
			}
		}
		if err := checkDecoder.Reset(br); err != nil {
			return err
		}
		defer checkDecoder.Reset(nil)
		r = checkDecoder
	} else {
		rc, err := decompress(io.NopCloser(br))
		if err != nil {
			return err
		}
		defer rc.Close()
		r = rc
	}
	h := sha256.New()
	if _, err := io.Copy(h, ctxio.Reader(ctx, r)); err != nil {
		return fmt.Errorf("output does not decompress: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return fmt.Errorf("output decompresses to other data (sha256:%s, want %s)", got, diffID)
	}
	return nil
}

// hashingWriter counts and hashes what goes through it.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, h: sha256.New()}
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }

// commandLevel is the highest zstd level the Go encoder serves well; above it the zstd program
// compresses (long window, much smaller baseline) when installed.
const commandLevel = 11

// CompressionFor is the setting for a command line's algorithm ("zstd" or "gzip") and level
// (0 for the default: zstd 19, gzip 6). zstd levels above 11 use the zstd program when it is on
// PATH, else the best Go encoder.
func CompressionFor(algo string, level int) (Compression, error) {
	switch algo {
	case algoGzip:
		if level == 0 {
			level = 6
		}
		if level < 1 || level > 9 {
			return Compression{}, fmt.Errorf("level %d: gzip levels are 1 to 9", level)
		}
		return Compression{Algo: algoGzip, Level: level}, nil
	case algoZstd:
		if level == 0 {
			level = 19
		}
		if level < 1 || level > 22 {
			return Compression{}, fmt.Errorf("level %d: zstd levels are 1 to 22", level)
		}
		c := Compression{Algo: algoZstd, Level: min(level, commandLevel)}
		if level > commandLevel {
			if bin, err := exec.LookPath("zstd"); err == nil {
				c.Command = zstdCommand(bin, level)
			}
		}
		return c, nil
	}
	return Compression{}, fmt.Errorf("compression %q: use zstd or gzip", algo)
}

// zstdCommand is the zstd program's command line for a level above commandLevel.
func zstdCommand(bin string, level int) []string {
	// --long=27 keeps the window at 128 MiB, the most a zstd decoder accepts by default.
	// --single-thread: zstd's worker threads each buffer a job of 4 windows (600+ MiB in
	// all); one thread holds one window, about 170 MiB at -19.
	cmd := []string{bin, "-" + strconv.Itoa(level), "--long=27", "--single-thread", "-q", "-c"}
	if level > 19 {
		cmd = append(cmd, "--ultra")
	}
	return cmd
}
