package ociimage

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/rehydrator/rehydrator/internal/testregistry"
	"github.com/rehydrator/rehydrator/signature"
)

// TestSignAndVerify signs an image in a layout and in a registry and checks the stored
// signature image has cosign's shape.
func TestSignAndVerify(t *testing.T) {
	f := getFixture(t)
	reg := testregistry.Start(t)
	img := build(t, f.spec())
	key, _ := signature.GenerateKey()
	other, _ := signature.GenerateKey()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "fcos-images")
	for _, ref := range []string{"oci:" + dir + ":stable", "docker://" + reg.Host() + "/fcos/rehydrator:stable"} {
		t.Run(strings.SplitN(ref, ":", 2)[0], func(t *testing.T) {
			d := write(t, ref, img)
			if _, err := Verify(ctx, ref, d, &key.PublicKey); !errors.Is(err, signature.ErrNoSignature) || !strings.Contains(err.Error(), "sha256-") {
				t.Fatalf("unsigned: %v", err)
			}
			id, err := DefaultIdentity(ref)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]string{true: "localhost/fcos-images", false: reg.Host() + "/fcos/rehydrator"}[strings.HasPrefix(ref, "oci:")]; id != want {
				t.Fatalf("identity %q, want %q", id, want)
			}
			sigRef, err := Sign(ctx, ref, d, key, id, "rehydrator test")
			if err != nil {
				t.Fatal(err)
			}
			tag, _ := SignatureTag(d)
			if !strings.HasSuffix(sigRef, ":"+tag) || !strings.HasPrefix(tag, "sha256-") || !strings.HasSuffix(tag, ".sig") {
				t.Fatalf("signature at %s (tag %s)", sigRef, tag)
			}
			p, err := Verify(ctx, ref, d, &key.PublicKey)
			if err != nil || p.Identity != id || p.Digest != d {
				t.Fatalf("Verify = %+v, %v", p, err)
			}
			if _, err := Verify(ctx, ref, d, &other.PublicKey); !errors.Is(err, signature.ErrUnknownKey) {
				t.Fatalf("other key: %v", err)
			}
			// A second signer adds a layer; the first signer re-signing replaces its own.
			Sign(ctx, ref, d, other, id, "")
			Sign(ctx, ref, d, key, id, "")
			sigs, err := readSignatures(ctx, ref, d)
			if err != nil || len(sigs) != 2 {
				t.Fatalf("%d signatures after two signers and a re-sign (%v), want 2", len(sigs), err)
			}
			// The skopeo view: an OCI manifest whose layer is the payload, annotated.
			out := skopeo(t, "inspect", "--raw", "--tls-verify=false", sigRef)
			var m v1.Manifest
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("%s: %v\n%s", sigRef, err, out)
			}
			if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
				len(m.Layers) != 2 || m.Layers[0].MediaType != SignatureMediaType || m.Layers[0].Annotations[SignatureAnnotation] == "" {
				t.Fatalf("signature manifest %s", out)
			}
			// A signature over another image does not count for this one.
			if _, err := Verify(ctx, ref, "sha256:"+strings.Repeat("0", 64), &key.PublicKey); !errors.Is(err, signature.ErrNoSignature) {
				t.Fatalf("other digest: %v", err)
			}
		})
	}
}

// TestSignatureForAnotherDigest: a .sig tag whose payload names another digest (copied or
// altered) is refused as such.
func TestSignatureForAnotherDigest(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	key, _ := signature.GenerateKey()
	ctx := context.Background()
	ref := "oci:" + filepath.Join(t.TempDir(), "l") + ":stable"
	d := write(t, ref, img)
	wrong := "sha256:" + strings.Repeat("1", 64)
	s, _ := signature.Sign(key, signature.Payload{Identity: "localhost/l", Digest: wrong})
	sigImg, err := signatureImage([]sigLayer{signedLayer(s)})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSignatureImage(ctx, ref, d, sigImg); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, ref, d, &key.PublicKey); !errors.Is(err, signature.ErrOtherDigest) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("Verify: %v", err)
	}
}

func TestSignatureStores(t *testing.T) {
	for _, ref := range []string{"docker-archive:/tmp/x.tar", "dir:/usr/share/rehydrator", ""} {
		if err := CheckSignable(ref); !errors.Is(err, ErrNoSignatureStore) {
			t.Errorf("CheckSignable(%q) = %v", ref, err)
		}
	}
	if err := CheckSignable("oci:/tmp/x:y"); err != nil {
		t.Error(err)
	}
	for id, ok := range map[string]bool{"quay.io/fedora/fcos-images": true, "127.0.0.1:5000/fcos": true, "localhost/l": true,
		"quay.io/fedora/fcos:stable": false, "quay.io/Fedora": false, "quay.io/x@sha256:" + strings.Repeat("0", 64): false, "": false} {
		if err := CheckIdentity(id); (err == nil) != ok {
			t.Errorf("CheckIdentity(%q) = %v", id, err)
		}
	}
	if _, err := SignatureTag("sha256:abc"); err == nil {
		t.Error("SignatureTag accepted a short digest")
	}
}

// TestAlteredLayoutIsDetected: in an OCI layout nothing checks a blob file against its name,
// so Open does. Here the config, or the metadata layer, of one image is swapped in place for
// those of another valid image with another recipe: a signature over the first manifest must
// not vouch for the second recipe.
func TestAlteredLayoutIsDetected(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	spec := f.spec()
	spec.Recipe = []byte(`{"version":1,"artifacts":["evil"]}`)
	evil := build(t, spec)
	m, _ := img.Manifest()
	em, _ := evil.Manifest()
	last := len(m.Layers) - 1
	swaps := map[string][2]v1.Hash{
		"config":         {m.Config.Digest, em.Config.Digest},
		"metadata layer": {m.Layers[last].Digest, em.Layers[last].Digest},
	}
	for name, swap := range swaps {
		dir := filepath.Join(t.TempDir(), "layout")
		write(t, "oci:"+dir+":good", img)
		write(t, "oci:"+dir+":evil", evil)
		blob := func(h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }
		data, err := os.ReadFile(blob(swap[1]))
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(blob(swap[0])) // a new file: the old one is hard-linked to the build's
		if err := os.WriteFile(blob(swap[0]), data, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := Open(context.Background(), "oci:"+dir+":good")
		if err == nil {
			recipe, _, _ := src.Metadata(context.Background())
			src.Close()
			t.Errorf("%s swapped in place: Open succeeded with recipe %s", name, recipe)
		} else if !strings.Contains(err.Error(), "hashes to") {
			t.Errorf("%s swapped in place: %v, want a digest mismatch", name, err)
		}
	}
}

// TestSignKeepsOthersLayers: signing adds to a signature image without dropping or changing
// what other signers stored (annotations such as cosign's bundle, layers of other kinds).
func TestSignKeepsOthersLayers(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	ctx := context.Background()
	ref := "oci:" + filepath.Join(t.TempDir(), "l") + ":stable"
	d := write(t, ref, img)
	theirKey, _ := signature.GenerateKey()
	theirs, _ := signature.Sign(theirKey, signature.Payload{Identity: "quay.io/x/y", Digest: d})
	withBundle := signedLayer(theirs)
	withBundle.annotations["dev.sigstore.cosign/bundle"] = `{"SignedEntryTimestamp":"x"}`
	foreign := sigLayer{mediaType: "application/vnd.example.attachment", content: []byte("hello"), annotations: map[string]string{"a": "b"}}
	sigImg, err := signatureImage([]sigLayer{foreign, withBundle})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSignatureImage(ctx, ref, d, sigImg); err != nil {
		t.Fatal(err)
	}
	key, _ := signature.GenerateKey()
	if _, err := Sign(ctx, ref, d, key, "localhost/l", ""); err != nil {
		t.Fatal(err)
	}
	layers, err := readSignatureLayers(ctx, ref, d)
	if err != nil || len(layers) != 3 {
		t.Fatalf("%d layers (%v), want the 2 there before and ours", len(layers), err)
	}
	if l := layers[0]; l.mediaType != foreign.mediaType || string(l.content) != "hello" || l.annotations["a"] != "b" {
		t.Fatalf("foreign layer became %+v", l)
	}
	if l := layers[1]; l.annotations["dev.sigstore.cosign/bundle"] == "" || l.annotations[SignatureAnnotation] != theirs.Signature {
		t.Fatalf("their signature layer lost annotations: %v", l.annotations)
	}
	if _, err := Verify(ctx, ref, d, &theirKey.PublicKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, ref, d, &key.PublicKey); err != nil {
		t.Fatal(err)
	}
}
