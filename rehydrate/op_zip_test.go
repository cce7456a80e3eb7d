package rehydrate

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/reflate"
	"github.com/rehydrator/rehydrator/zipmember"
)

// zipRecipe is blob(member) -> zip(layout[, recon]) for file.
func zipRecipe(t *testing.T, file []byte) (*Recipe, memBlobs) {
	t.Helper()
	a, err := zipmember.Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Layout()
	if err != nil {
		t.Fatal(err)
	}
	lj, _ := json.Marshal(l)
	step := Step{Op: OpZip, Params: lj}
	var plain bytes.Buffer
	blobs := memBlobs{}
	if a.Member.Method == zipmember.Deflate {
		recon, _, err := reflate.SplitStream(a.Raw(), &plain)
		if err != nil {
			t.Fatal(err)
		}
		step.Blob = digestOf(recon)
		blobs[step.Blob] = recon
	} else {
		plain.ReadFrom(a.Raw())
	}
	blobs[digestOf(plain.Bytes())] = plain.Bytes()
	r := &Recipe{SchemaVersion: SchemaVersion,
		Artifacts: []Artifact{{ID: "x86_64/hyperv/vhdx.zip/disk", Name: "out.zip", Size: int64(len(file)), SHA256: hexOf(file),
			Steps: []Step{{Op: OpBlob, Blob: digestOf(plain.Bytes())}, step}}}}
	for d, b := range blobs {
		r.Blobs = append(r.Blobs, Blob{Digest: d, Size: int64(len(b))})
	}
	r.DeclareFeatures()
	return r, blobs
}

// Info-ZIP's zip -9j (deflated) and zip -0j (stored) archives come out of the zip op byte for
// byte; a damaged reconstruction blob gives an error, not a wrong archive.
func TestZipRoundTrip(t *testing.T) {
	dir := t.TempDir()
	member := filepath.Join(dir, "disk.vhdx")
	os.WriteFile(member, []byte(strings.Repeat("hyperv disk contents, partly repeated; ", 20000)), 0o644)
	for _, level := range []string{"-9", "-6", "-0"} {
		out := filepath.Join(dir, "a"+level+".zip")
		if b, err := exec.Command("zip", level+"j", "-q", out, member).CombinedOutput(); err != nil {
			t.Fatalf("zip %s: %v: %s", level, err, b)
		}
		file, _ := os.ReadFile(out)
		r, blobs := zipRecipe(t, file)
		got, err := rehydrateOne(t, r, blobs)
		if err != nil {
			t.Fatalf("zip %s: %v", level, err)
		}
		if !bytes.Equal(got, file) {
			t.Fatalf("zip %s: the zip op wrote other bytes", level)
		}
		if s := r.Artifacts[0].Steps[1]; s.Blob != "" {
			recon := blobs[s.Blob]
			recon[len(recon)/2] ^= 0x40
			if got, err := rehydrateOne(t, r, blobs); err == nil && !bytes.Equal(got, file) {
				t.Fatalf("zip %s: a damaged blob gave a wrong archive without an error", level)
			}
		}
	}
}
