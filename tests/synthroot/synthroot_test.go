package synthroot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// treeDigest hashes every path, mode, symlink target and content under dir, in walk order.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %v\n", rel, fi.Mode())
		switch {
		case fi.Mode()&os.ModeSymlink != 0: // its time is when it was made: nothing reads it
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			io.WriteString(h, l+"\n")
		default:
			fmt.Fprintf(h, "%d\n", fi.ModTime().Unix())
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The tree must not change with the Go release or the machine: the golden image digests in
// tests/e2e depend on it. A deliberate change of the generator needs new golden digests too.
func TestTreeIsStable(t *testing.T) {
	const want = "1f2e45718e7def83b7c8d4f10dbde53526102705c69f30742aefa1eb65144bb3"
	s := Spec{Name: "test", Seed: 7, Bytes: 4 << 20}
	a, b := t.TempDir(), t.TempDir()
	if err := write(a, s); err != nil {
		t.Fatal(err)
	}
	if err := write(b, s); err != nil {
		t.Fatal(err)
	}
	da, db := treeDigest(t, a), treeDigest(t, b)
	if da != db {
		t.Fatalf("two writes of the same spec differ: %s, %s", da, db)
	}
	if da != want {
		t.Errorf("tree digest %s, want %s: the generator changed; the golden digests of tests/e2e change with it", da, want)
	}
}
