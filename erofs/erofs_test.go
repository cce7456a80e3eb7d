package erofs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// erofsUtilsBin is where scripts/build-erofs-utils.sh installs erofs-utils 1.8.6 (the one with
// LZMA); EROFS_UTILS_BIN overrides it.
const erofsUtilsBin = "/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin"

// tool returns the path of an erofs-utils 1.8.6 tool, failing the test when it is missing:
// CI runs scripts/setup-debian.sh, which builds it.
func tool(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("EROFS_UTILS_BIN")
	if dir == "" {
		dir = erofsUtilsBin
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing (%v): run scripts/build-erofs-utils.sh (scripts/setup-debian.sh does) or set EROFS_UTILS_BIN", p, err)
	}
	return p
}

var (
	workOnce sync.Once
	workDir  string
	workErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

// srcFile is what the generated tree holds at a path.
type srcFile struct {
	mode   fs.FileMode
	data   []byte // regular files
	target string // symlinks
}

var (
	treeOnce sync.Once
	treeDir  string
	treeWant map[string]srcFile
	treeErr  error
)

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or
	his from at which but have an they you were her she there been one all we their has would when
	if so no will more can out up other into what could time only new some about these two may
	first then do any like my now over such our man me even most made after also did many before
	must through back years where much your way well down should because each just those people`)

func textBytes(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// makeTree writes a small /usr-like tree: thousands of small files (text and random), some
// mid-sized and duplicated ones, a few large ones, empty files, symlinks, a hard link, a FIFO,
// xattrs and a deep directory.
func makeTree(dir string) (map[string]srcFile, error) {
	r := rand.New(rand.NewPCG(12, 34))
	want := map[string]srcFile{}
	put := func(p string, data []byte) error {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		want[p] = srcFile{mode: 0o644, data: data}
		return os.WriteFile(full, data, 0o644)
	}
	for i := 0; i < 1500; i++ {
		if err := put(fmt.Sprintf("small/t%04d.txt", i), textBytes(r, 1+r.IntN(4096))); err != nil {
			return nil, err
		}
	}
	for i := 0; i < 200; i++ {
		if err := put(fmt.Sprintf("small/r%03d.bin", i), randBytes(r, 1+r.IntN(8192))); err != nil {
			return nil, err
		}
	}
	var mids [][]byte
	for i := 0; i < 60; i++ {
		d := textBytes(r, 4096+r.IntN(60<<10))
		mids = append(mids, d)
		if err := put(fmt.Sprintf("mid/m%02d.txt", i), d); err != nil {
			return nil, err
		}
	}
	prefix := textBytes(r, 20<<10)
	for i := 0; i < 30; i++ {
		if err := put(fmt.Sprintf("dup/copy%02d.txt", i), mids[i%10]); err != nil {
			return nil, err
		}
		d := append(slices.Clone(prefix), textBytes(r, r.IntN(10<<10))...)
		if err := put(fmt.Sprintf("dup/prefix%02d.txt", i), d); err != nil {
			return nil, err
		}
	}
	mixed := make([]byte, 0, 3<<19)
	for len(mixed) < 3<<19 {
		if len(mixed)/(64<<10)%2 == 0 {
			mixed = append(mixed, textBytes(r, 64<<10)...)
		} else {
			mixed = append(mixed, randBytes(r, 64<<10)...)
		}
	}
	zeros := append(make([]byte, 1<<20), textBytes(r, 100000)...)
	for p, d := range map[string][]byte{
		"large/text.bin": textBytes(r, 2<<20+12345), "large/random.bin": randBytes(r, 1<<20+777),
		"large/mixed.bin": mixed, "large/zeros.bin": zeros,
	} {
		if err := put(p, d); err != nil {
			return nil, err
		}
	}
	for i := 0; i < 20; i++ {
		if err := put(fmt.Sprintf("empty/e%02d", i), nil); err != nil {
			return nil, err
		}
	}
	deep := "deep"
	for i := 0; i < 50; i++ {
		deep += fmt.Sprintf("/d%02d", i)
	}
	if err := put(deep+"/leaf.txt", []byte("at the bottom\n")); err != nil {
		return nil, err
	}
	for d := deep; d != "."; d = filepath.Dir(d) {
		want[d] = srcFile{mode: fs.ModeDir | 0o755}
	}
	for _, d := range []string{"small", "mid", "dup", "large", "empty", "links"} {
		want[d] = srcFile{mode: fs.ModeDir | 0o755}
	}
	if err := os.MkdirAll(filepath.Join(dir, "links"), 0o755); err != nil {
		return nil, err
	}
	for i := 0; i < 20; i++ {
		target := fmt.Sprintf("../small/t%04d.txt", i)
		if i == 5 {
			target = strings.Repeat("long/", 200) + "target"
		}
		p := fmt.Sprintf("links/l%02d", i)
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			return nil, err
		}
		want[p] = srcFile{mode: fs.ModeSymlink | 0o777, target: target}
	}
	if err := os.Link(filepath.Join(dir, "small/t0001.txt"), filepath.Join(dir, "links/hard")); err != nil {
		return nil, err
	}
	want["links/hard"] = want["small/t0001.txt"]
	if err := syscall.Mkfifo(filepath.Join(dir, "links/fifo"), 0o644); err != nil {
		return nil, err
	}
	want["links/fifo"] = srcFile{mode: fs.ModeNamedPipe | 0o644}
	// Xattrs make inline xattr areas the reader must step over.
	for i := 0; i < 40; i++ {
		p := filepath.Join(dir, fmt.Sprintf("small/t%04d.txt", i*7))
		val := bytes.Repeat([]byte{'v'}, 1+i*3)
		if err := syscall.Setxattr(p, "user.rehydrator", val, 0); err != nil {
			if err := syscall.Setxattr(p, "trusted.rehydrator", val, 0); err != nil {
				return nil, fmt.Errorf("setxattr: %w", err)
			}
		}
	}
	// Permissions as written, whatever the umask was.
	for p, f := range want {
		if f.mode.Type() == 0 || f.mode.IsDir() {
			if err := os.Chmod(filepath.Join(dir, p), f.mode.Perm()); err != nil {
				return nil, err
			}
		}
	}
	return want, nil
}

func tree(t testing.TB) (string, map[string]srcFile) {
	t.Helper()
	treeOnce.Do(func() {
		workOnce.Do(func() { workDir, workErr = os.MkdirTemp("", "erofs-test-") })
		if workErr != nil {
			treeErr = workErr
			return
		}
		treeDir = filepath.Join(workDir, "tree")
		treeWant, treeErr = makeTree(treeDir)
	})
	if treeErr != nil {
		t.Fatalf("generate tree: %v", treeErr)
	}
	return treeDir, treeWant
}

type imageCase struct {
	name string
	args []string
	// exclude: regular expressions of paths left out (mkfs.erofs --exclude-regex).
	exclude []string
	// check looks at the figures of the whole image for what its options must produce.
	check func(t *testing.T, s *imageStats)
}

var (
	imagesMu sync.Mutex
	images   = map[string]*imageBuild{}
)

type imageBuild struct {
	once sync.Once
	path string
	err  error
}

// buildImage makes an image of the generated tree with mkfs.erofs once per test binary.
func buildImage(t testing.TB, name string, args, exclude []string) string {
	t.Helper()
	dir, _ := tree(t)
	mkfs := tool(t, "mkfs.erofs")
	imagesMu.Lock()
	b := images[name]
	if b == nil {
		b = &imageBuild{}
		images[name] = b
	}
	imagesMu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(workDir, name+".erofs")
		a := append([]string{"--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f"}, args...)
		for i, x := range a {
			if x == "--compress-hints=HINTS" {
				// The second algorithm (HEAD2 lclusters) for some files, in 64 KiB pclusters.
				hints := filepath.Join(workDir, name+".hints")
				if err := os.WriteFile(hints, []byte("65536 1 ^mid/\n16384 1 ^large/mixed\n"), 0o644); err != nil {
					b.err = err
					return
				}
				a[i] = "--compress-hints=" + hints
			}
		}
		for _, x := range exclude {
			a = append(a, "--exclude-regex="+x)
		}
		a = append(a, b.path, dir)
		if out, err := exec.Command(mkfs, a...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("mkfs.erofs %s: %v: %s", strings.Join(a, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

type imageStats struct {
	layouts     map[Layout]int
	kinds       map[ExtentKind]int
	packedKinds map[ExtentKind]int // extents of the packed inode
	algs        map[Algorithm]int
	inlineComp  int // compressed inline (ztailpacking) clusters
	partial     int
	interlaced  int
	bigClusters int // compressed clusters over one block
	sharedPhys  int // clusters used by more than one extent (dedupe)
	extended    int
	xattrs      int
}

var lzma6 = "-zlzma,level=6"

// dedupeExclude leaves the large single-content files out of -Ededupe images: mkfs.erofs 1.8.6
// spends minutes looking for duplicates in them (77 s of CPU against 2 s without dedupe).
var dedupeExclude = []string{"^large/(random|zeros|text)"}

var imageCases = []imageCase{
	{"plain", nil, nil, func(t *testing.T, s *imageStats) {
		want(t, s.layouts[FlatInline] > 0 && s.layouts[FlatPlain] > 0, "flat inline and flat plain inodes")
		want(t, s.kinds[Compressed] == 0, "no compressed extents")
	}},
	{"chunk-blockmap", []string{"--chunksize=8192"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.layouts[ChunkBased] > 0, "chunk-based inodes")
	}},
	{"chunk-indexes", []string{"--chunksize=65536", "-Eforce-chunk-indexes", "-Eforce-inode-extended"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.layouts[ChunkBased] > 0 && s.extended > 0, "chunk-based extended inodes")
	}},
	{"lzma", []string{lzma6}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.algs[LZMA] > 0 && s.layouts[CompressedCompact] > 0, "lzma clusters with compact indexes")
		want(t, s.kinds[Plain] > 0, "plain clusters for incompressible data")
	}},
	{"lzma-C4096", []string{lzma6, "-C4096"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.bigClusters == 0, "no cluster over one block")
	}},
	{"lzma-C65536", []string{lzma6, "-C65536"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.bigClusters > 0, "big pclusters")
	}},
	{"lzma-C1048576", []string{lzma6, "-C1048576"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.bigClusters > 0, "big pclusters")
	}},
	{"lzma-fragments", []string{lzma6, "-Efragments"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.kinds[Fragment] > 0, "fragments")
	}},
	{"lzma-fcos", []string{lzma6, "-Efragments", "-C1048576"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.kinds[Fragment] > 0 && s.bigClusters > 0, "fragments and big pclusters")
	}},
	{"lzma-dedupe", []string{lzma6, "-Ededupe"}, dedupeExclude, func(t *testing.T, s *imageStats) {
		want(t, s.sharedPhys > 0, "clusters shared by several extents")
		want(t, s.layouts[CompressedFull] > 0, "full indexes")
	}},
	{"lzma-ztailpacking", []string{lzma6, "-Eztailpacking"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.inlineComp > 0, "inline compressed clusters")
	}},
	{"lzma-all", []string{lzma6, "-Efragments,dedupe,ztailpacking", "-C65536"}, dedupeExclude, func(t *testing.T, s *imageStats) {
		want(t, s.kinds[Fragment] > 0 && s.bigClusters > 0, "fragments and big pclusters")
	}},
	{"lzma-all-fragments", []string{lzma6, "-Eall-fragments"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.kinds[Fragment] > 0, "fragments")
	}},
	{"lzma-legacy", []string{lzma6, "-Elegacy-compress", "-Eforce-inode-extended", "-C65536"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.layouts[CompressedFull] > 0 && s.layouts[CompressedCompact] == 0, "full indexes only")
		want(t, s.bigClusters > 0, "big pclusters")
	}},
	{"lzma-lz4hc-hints", []string{"-zlzma:lz4hc", "-C65536", "--compress-hints=HINTS"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.algs[LZMA] > 0 && s.algs[LZ4] > 0, "lzma and lz4 clusters")
	}},
	{"lz4hc-ztailpacking", []string{"-zlz4hc", "-C65536", "-Eztailpacking"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.algs[LZ4] > 0 && s.inlineComp > 0 && s.bigClusters > 0, "lz4 big and inline clusters")
	}},
	// Without -C above one block LZ4 images have no big pclusters: compact indexes count
	// one block per head.
	{"lz4", []string{"-zlz4"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.algs[LZ4] > 0 && s.layouts[CompressedCompact] > 0 && s.bigClusters == 0, "lz4 one-block clusters with compact indexes")
	}},
	{"lz4-legacy", []string{"-zlz4", "-Elegacy-compress"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.algs[LZ4] > 0 && s.layouts[CompressedFull] > 0, "lz4 with full indexes")
	}},
	{"deflate", []string{"-zdeflate", "-C16384", "-Efragments"}, nil, func(t *testing.T, s *imageStats) {
		want(t, s.algs[Deflate] > 0, "deflate clusters")
	}},
}

func want(t *testing.T, ok bool, what string) {
	t.Helper()
	if !ok {
		t.Errorf("image should have %s", what)
	}
}

func TestImages(t *testing.T) {
	for _, c := range imageCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img := buildImage(t, c.name, c.args, c.exclude)
			s := checkImage(t, img, c.exclude)
			c.check(t, s)
			t.Logf("%s: packed %v layouts %v kinds %v algs %v inline %d partial %d interlaced %d big %d shared %d",
				c.name, s.packedKinds, s.layouts, s.kinds, s.algs, s.inlineComp, s.partial, s.interlaced, s.bigClusters, s.sharedPhys)
		})
	}
}

// checkImage walks an image and checks every entry against the tree, every file's extents
// for exact coverage, its content, and a sample against dump.erofs.
func checkImage(t *testing.T, path string, exclude []string) *imageStats {
	_, all := tree(t)
	want := map[string]srcFile{}
	for p, f := range all {
		if !slices.ContainsFunc(exclude, func(x string) bool { return regexp.MustCompile(x).MatchString(p) }) {
			want[p] = f
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := Open(f)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	st, _ := f.Stat()
	bs := im.Superblock().BlockSize()
	if int64(im.Superblock().Blocks)*bs != st.Size() {
		t.Errorf("superblock blocks %d x %d != image size %d", im.Superblock().Blocks, bs, st.Size())
	}
	s := &imageStats{layouts: map[Layout]int{}, kinds: map[ExtentKind]int{}, algs: map[Algorithm]int{}, packedKinds: map[ExtentKind]int{}}
	phys := map[int64]int{}
	seen := map[string]bool{}
	counts := map[string]int{}
	var sample []string
	err = im.Walk(func(p string, in *Inode) error {
		if p == "." {
			return nil
		}
		seen[p] = true
		w, ok := want[p]
		if !ok {
			return fmt.Errorf("%s: not in the tree", p)
		}
		if in.FileMode() != w.mode {
			t.Errorf("%s: mode %v, want %v", p, in.FileMode(), w.mode)
		}
		if in.Extended {
			s.extended++
		}
		if in.XattrCount > 0 {
			s.xattrs++
		}
		switch {
		case in.IsRegular():
			counts["regular"]++
		case in.IsDir():
			counts["dir"]++
		case in.IsSymlink():
			counts["symlink"]++
		default:
			counts["fifo"]++
		}
		if in.HasData() {
			s.layouts[in.Layout]++
		}
		ext, err := im.Extents(in)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		var pos int64
		for i, e := range ext {
			if e.FileOffset != pos || e.Length <= 0 {
				return fmt.Errorf("%s: extent %d at %d+%d, want it at %d", p, i, e.FileOffset, e.Length, pos)
			}
			pos += e.Length
			s.kinds[e.Kind]++
			switch e.Kind {
			case Compressed:
				s.algs[e.Algorithm]++
				phys[e.PhysOffset]++
				if e.Inline {
					s.inlineComp++
				} else {
					if e.PhysOffset%bs != 0 || e.PhysLength%bs != 0 {
						return fmt.Errorf("%s: compressed cluster %d+%d not block aligned", p, e.PhysOffset, e.PhysLength)
					}
					if e.PhysLength > bs {
						s.bigClusters++
					}
				}
			case Plain:
				if in.Layout.Compressed() && !e.Inline {
					phys[e.PhysOffset]++
				}
			}
			if e.Partial {
				s.partial++
			}
			if e.Interlaced {
				s.interlaced++
			}
			if e.Kind == Plain || e.Kind == Compressed {
				if e.PhysOffset < 0 || e.PhysOffset+e.PhysLength > st.Size() {
					return fmt.Errorf("%s: cluster %d+%d outside the image", p, e.PhysOffset, e.PhysLength)
				}
			}
		}
		if in.HasData() && pos != int64(in.Size) {
			return fmt.Errorf("%s: extents cover %d of %d bytes", p, pos, in.Size)
		}
		switch {
		case in.IsSymlink():
			target, err := im.Readlink(in)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if target != w.target {
				t.Errorf("%s: target %q, want %q", p, target, w.target)
			}
		case in.IsRegular():
			if in.Size != uint64(len(w.data)) {
				return fmt.Errorf("%s: size %d, want %d", p, in.Size, len(w.data))
			}
			r, err := im.Open(in)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				return fmt.Errorf("%s: read: %w", p, err)
			}
			if !bytes.Equal(got, w.data) {
				return fmt.Errorf("%s: content differs from the source (extents %+v)", p, ext)
			}
			if len(ext) > 1 || strings.HasPrefix(p, "large/") || strings.HasSuffix(p, "0.txt") && len(sample) < 40 {
				sample = append(sample, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	// The packed inode is no path's; its clusters hold the fragments.
	if packed, err := im.Packed(); err != nil {
		t.Fatal(err)
	} else if packed != nil {
		ext, err := im.Extents(packed)
		if err != nil {
			t.Fatalf("packed inode: %v", err)
		}
		var pos int64
		for _, e := range ext {
			if e.FileOffset != pos || e.Kind == Fragment {
				t.Fatalf("packed inode: extent %+v at %d", e, pos)
			}
			pos += e.Length
			s.packedKinds[e.Kind]++
			if e.Kind == Compressed && e.PhysLength > bs {
				s.bigClusters++
			}
		}
		if pos != int64(packed.Size) {
			t.Errorf("packed inode: extents cover %d of %d bytes", pos, packed.Size)
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s: missing from the image", p)
		}
	}
	for _, n := range phys {
		if n > 1 {
			s.sharedPhys++
		}
	}
	compareDumpStats(t, path, counts)
	for _, p := range sample {
		compareDumpExtents(t, im, path, p)
	}
	return s
}

// compareDumpStats compares the file counts with dump.erofs -S.
func compareDumpStats(t *testing.T, img string, counts map[string]int) {
	out, err := exec.Command(tool(t, "dump.erofs"), "-S", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dump.erofs -S: %v: %s", err, out)
	}
	for key, name := range map[string]string{"regular": "regular file", "dir": "directory", "symlink": "symlink file", "fifo": "FIFO file"} {
		m := regexp.MustCompile(`Filesystem ` + name + ` count:\s+(\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("dump.erofs -S has no %s count:\n%s", name, out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		if key == "dir" {
			n-- // dump.erofs counts the root, the walk does not report it
		}
		if counts[key] != n {
			t.Errorf("%s count %d, dump.erofs says %d", key, counts[key], n)
		}
	}
}

var dumpExtent = regexp.MustCompile(`^\s*(\d+):\s+(\d+)\.\.\s*(\d+)\s*\|\s*(\d+)\s*:\s*(\d+)\.\.\s*(\d+)\s*\|\s*(\d+)`)

// compareDumpExtents compares a file's extents with dump.erofs -e: logical range and the
// physical cluster (dump.erofs shows fragments as physical 0+0).
func compareDumpExtents(t *testing.T, im *Image, img, p string) {
	out, err := exec.Command(tool(t, "dump.erofs"), "--path=/"+p, "-e", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dump.erofs -e %s: %v: %s", p, err, out)
	}
	type row struct{ la, llen, pa, plen int64 }
	var rows []row
	for _, line := range strings.Split(string(out), "\n") {
		m := dumpExtent.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
		rows = append(rows, row{n(2), n(4), n(5), n(7)})
	}
	in, err := im.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := im.Extents(in)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Layout.Compressed() {
		// dump.erofs maps flat and chunk files block run by block run; compare coverage only.
		if len(rows) == 0 {
			t.Errorf("%s: dump.erofs lists no extents:\n%s", p, out)
		}
		return
	}
	var mine []row
	for _, e := range ext {
		r := row{e.FileOffset, e.Length, e.PhysOffset, e.PhysLength}
		if e.Kind == Fragment {
			r.pa, r.plen = 0, 0
		}
		mine = append(mine, r)
	}
	if !slices.Equal(rows, mine) {
		t.Errorf("%s: extents differ from dump.erofs -e\n ours: %v\n dump: %v", p, mine, rows)
	}
}

func TestBadInput(t *testing.T) {
	img, err := os.ReadFile(buildImage(t, "plain", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"zeros", make([]byte, 8192), "magic"},
		{"short", img[:1100], "superblock"},
		{"checksum", func() []byte { d := bytes.Clone(img); d[1024+64] ^= 1; return d }(), "checksum"},
		{"blocksize", func() []byte { d := bytes.Clone(img); d[1024+12] = 30; return d }(), "block size"},
	} {
		_, err := Open(bytes.NewReader(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one about %q", c.name, err, c.want)
		}
	}
	// A truncated image opens (the superblock is there) but its files fail to read, cleanly.
	im, err := Open(bytes.NewReader(img[:len(img)/2]))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Walk(func(p string, in *Inode) error {
		if r, err := im.Open(in); err == nil && in.IsRegular() {
			_, err = io.Copy(io.Discard, r)
			return err
		}
		return nil
	}); err == nil || !errors.Is(err, ErrFormat) {
		t.Errorf("walk of a truncated image: %v, want an ErrFormat", err)
	}
}

func TestMissingFileErrors(t *testing.T) {
	f, err := os.Open(buildImage(t, "plain", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Lookup("small/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lookup of a missing file: %v", err)
	}
}

func errorsIsNotExist(err error) bool {
	return err != nil && strings.Contains(err.Error(), fs.ErrNotExist.Error())
}

// BenchmarkReadLZMA reads a 2 MiB text file of 1 MiB LZMA pclusters: the speed of our
// MicroLZMA decoding through ulikunitz/xz/lzma.
func BenchmarkReadLZMA(b *testing.B) {
	f, err := os.Open(buildImage(b, "lzma-C1048576", []string{lzma6, "-C1048576"}, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	im, err := Open(f)
	if err != nil {
		b.Fatal(err)
	}
	in, err := im.Lookup("large/text.bin")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(in.Size))
	for b.Loop() {
		r, err := im.Open(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
