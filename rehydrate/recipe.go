// Package rehydrate owns the recipe: the versioned document that says, for every artifact of a
// release, which stored blobs and which steps regenerate it bit for bit, and the interpreter that
// runs those steps as a stream and checks the result against the artifact's SHA-256.
package rehydrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// SchemaVersion is the recipe format version this package writes. Readers accept any version up
// to their own; what changes the meaning of a recipe is announced with features, not versions.
const SchemaVersion = 1

// Recipe is the contract between `build` and `rehydrate`.
type Recipe struct {
	SchemaVersion int    `json:"schemaVersion"`
	Generator     string `json:"generator,omitempty"`
	// RequiredFeatures must all be known to the reader, or it refuses the recipe (like zchunk's
	// mandatory feature flags). OptionalFeatures carry extra information that may be ignored.
	RequiredFeatures []string   `json:"requiredFeatures"`
	OptionalFeatures []string   `json:"optionalFeatures,omitempty"`
	Blobs            []Blob     `json:"blobs"`
	Artifacts        []Artifact `json:"artifacts"`
}

// Blob is a stored file: a baseline, a delta, or an artifact kept whole.
type Blob struct {
	Digest string `json:"digest"` // "sha256:<hex>" of the blob content
	Size   int64  `json:"size"`
	Role   string `json:"role,omitempty"` // "baseline", "delta", "whole": for humans and listings
}

// Artifact is one file that can be rehydrated.
type Artifact struct {
	ID       string `json:"id"` // "arch/platform/format/kind", as streammeta.Artifact.ID
	Arch     string `json:"arch"`
	Platform string `json:"platform"`
	Format   string `json:"format"`
	Kind     string `json:"kind"`
	Name     string `json:"name"` // output file name
	// Disk is the name `--disk` selects it by ("openstack", "metal4k"); empty for ISO and PXE.
	Disk   string `json:"disk,omitempty"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // of the rehydrated (uncompressed) file, hex
	Steps  []Step `json:"steps"`
}

// Step is one stage of an artifact's pipeline. The first step is a source (blob or ref); each
// later step transforms the output of the one before it.
type Step struct {
	Op     string `json:"op"`
	Blob   string `json:"blob,omitempty"`   // OpBlob: the blob; OpPatch: the delta blob
	Ref    string `json:"ref,omitempty"`    // OpRef: an artifact ID
	Offset int64  `json:"offset,omitempty"` // OpExtract
	Length int64  `json:"length,omitempty"` // OpExtract
	// Params holds the parameters of the ops that have more than the fields above (encoders).
	Params json.RawMessage `json:"params,omitempty"`

	cache *decoded `json:"-"` // the parameters as Recipe.Validate decoded them (op.go)
}

// String renders a step for humans: "blob(sha256:ab12…)".
func (s Step) String() string {
	if o := ops[s.Op]; o != nil && o.str != nil {
		return o.str(&s)
	}
	return s.Op
}

// ShortDigest abbreviates "sha256:<hex>" to "sha256:<12 hex>".
func ShortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// ErrUnknownFeature marks a recipe that needs a feature this rehydrator does not implement.
var ErrUnknownFeature = errors.New("unknown mandatory feature")

// ErrBadRecipe marks a recipe that is not well formed.
var ErrBadRecipe = errors.New("invalid recipe")

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseRecipe decodes and validates a recipe.
func ParseRecipe(data []byte) (*Recipe, error) {
	var r Recipe
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecipe, err)
	}
	if r.SchemaVersion < 1 {
		return nil, fmt.Errorf("%w: schemaVersion %d", ErrBadRecipe, r.SchemaVersion)
	}
	var unknown []string
	for _, f := range r.RequiredFeatures {
		if ops[f] == nil {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w: the image needs %s, which this rehydrator does not implement; use a newer rehydrator (the image's own: podman run IMAGE ...)",
			ErrUnknownFeature, strings.Join(unknown, ", "))
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks the recipe's internal consistency: digests, references, step order, and that
// every op it uses is declared in RequiredFeatures.
func (r *Recipe) Validate() error {
	blobs := map[string]bool{}
	for _, b := range r.Blobs {
		if !digestRE.MatchString(b.Digest) {
			return fmt.Errorf("%w: blob digest %q", ErrBadRecipe, b.Digest)
		}
		if b.Size < 0 {
			return fmt.Errorf("%w: blob %s has negative size", ErrBadRecipe, b.Digest)
		}
		blobs[b.Digest] = true
	}
	ids := map[string]int{}
	for i, a := range r.Artifacts {
		if a.ID == "" || a.Name == "" || strings.ContainsAny(a.Name, "/\\\x00") || a.Name == "." || a.Name == ".." {
			return fmt.Errorf("%w: artifact %d: bad id %q or name %q", ErrBadRecipe, i, a.ID, a.Name)
		}
		if _, dup := ids[a.ID]; dup {
			return fmt.Errorf("%w: artifact %s listed twice", ErrBadRecipe, a.ID)
		}
		ids[a.ID] = i
		if !hexRE.MatchString(a.SHA256) || a.Size < 0 {
			return fmt.Errorf("%w: artifact %s: bad sha256 %q or size %d", ErrBadRecipe, a.ID, a.SHA256, a.Size)
		}
		if len(a.Steps) == 0 {
			return fmt.Errorf("%w: artifact %s has no steps", ErrBadRecipe, a.ID)
		}
		for j := range a.Steps {
			if err := r.validateStep(&r.Artifacts[i], j, blobs); err != nil {
				return err
			}
		}
	}
	// References must point at known artifacts and must not form a cycle.
	state := make([]int, len(r.Artifacts)) // 0 new, 1 visiting, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case 1:
			return fmt.Errorf("%w: artifact %s refers to itself through refs", ErrBadRecipe, r.Artifacts[i].ID)
		case 2:
			return nil
		}
		state[i] = 1
		for k := range r.Artifacts[i].Steps {
			ref, ok := r.Artifacts[i].Steps[k].ref()
			if !ok {
				continue
			}
			j, ok := ids[ref]
			if !ok {
				return fmt.Errorf("%w: artifact %s refers to unknown artifact %q", ErrBadRecipe, r.Artifacts[i].ID, ref)
			}
			if err := visit(j); err != nil {
				return err
			}
		}
		state[i] = 2
		return nil
	}
	for i := range r.Artifacts {
		if err := visit(i); err != nil {
			return err
		}
	}
	return nil
}

// validateStep checks step j of a against the registry and the recipe's blobs, and keeps its
// decoded parameters for the engine.
func (r *Recipe) validateStep(a *Artifact, j int, blobs map[string]bool) error {
	s := &a.Steps[j]
	if !slices.Contains(r.RequiredFeatures, s.Op) {
		return fmt.Errorf("%w: artifact %s step %d uses %q, which requiredFeatures does not declare", ErrBadRecipe, a.ID, j, s.Op)
	}
	o := ops[s.Op]
	if o == nil {
		return fmt.Errorf("%w: artifact %s step %d: op %q (use a newer rehydrator)", ErrUnknownFeature, a.ID, j, s.Op)
	}
	if o.source != (j == 0) {
		return fmt.Errorf("%w: artifact %s step %d: %s cannot stand there (a pipeline starts with one %s)", ErrBadRecipe, a.ID, j, s.Op, strings.Join(sources(), " or "))
	}
	p, err := o.decode(s)
	if err != nil {
		return fmt.Errorf("%w: artifact %s step %d: %v", ErrBadRecipe, a.ID, j, err)
	}
	if o.blobs != nil {
		for _, b := range o.blobs(p) {
			if !blobs[b] {
				return fmt.Errorf("%w: artifact %s step %d: blob %q is not in the blob list", ErrBadRecipe, a.ID, j, b)
			}
		}
	}
	s.remember(o, p)
	return nil
}

// ref returns the artifact a step reads, if it reads one.
func (s *Step) ref() (string, bool) {
	o, p, err := s.decode()
	if err != nil || o.ref == nil {
		return "", false
	}
	return o.ref(p), true
}

// Marshal encodes the recipe deterministically (sorted feature lists, indented).
func (r *Recipe) Marshal() ([]byte, error) {
	sort.Strings(r.RequiredFeatures)
	sort.Strings(r.OptionalFeatures)
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Artifact returns the artifact with the given ID.
func (r *Recipe) Artifact(id string) (*Artifact, bool) {
	for i := range r.Artifacts {
		if r.Artifacts[i].ID == id {
			return &r.Artifacts[i], true
		}
	}
	return nil, false
}

// BlobsFor returns the digests of the blobs that rehydrating the given artifacts reads, in the
// order first needed, following refs: what a remote reader must fetch and nothing more.
func (r *Recipe) BlobsFor(ids ...string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		a, ok := r.Artifact(id)
		if !ok {
			return
		}
		for i := range a.Steps {
			s := &a.Steps[i]
			o, p, err := s.decode()
			if err != nil {
				continue // not a valid step: it reads nothing
			}
			if o.ref != nil {
				walk(o.ref(p))
			}
			if o.blobs != nil {
				for _, b := range o.blobs(p) {
					if !seen[b] {
						seen[b] = true
						out = append(out, b)
					}
				}
			}
		}
	}
	for _, id := range ids {
		walk(id)
	}
	return out
}

// DeclareFeatures sets RequiredFeatures to exactly the ops the artifacts use.
func (r *Recipe) DeclareFeatures() {
	used := map[string]bool{}
	for _, a := range r.Artifacts {
		for _, s := range a.Steps {
			used[s.Op] = true
		}
	}
	r.RequiredFeatures = r.RequiredFeatures[:0]
	for f := range used {
		r.RequiredFeatures = append(r.RequiredFeatures, f)
	}
	sort.Strings(r.RequiredFeatures)
}
