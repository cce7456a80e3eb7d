package ociimage

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/rehydrator/rehydrator/internal/testregistry"
)

type skopeoInspect struct {
	Digest       string
	Labels       map[string]string
	Layers       []string
	Os           string
	Architecture string
}

func inspect(t *testing.T, args ...string) skopeoInspect {
	t.Helper()
	var out skopeoInspect
	raw := skopeo(t, append([]string{"inspect"}, args...)...)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("skopeo inspect %v: %v\n%s", args, err, raw)
	}
	return out
}

// TestSkopeoInterop checks that our image is an ordinary image to skopeo in every transport,
// and that every copy skopeo makes (which may recompress or convert) is still readable.
func TestSkopeoInterop(t *testing.T) {
	f := getFixture(t)
	reg := testregistry.Start(t)
	tmp := t.TempDir()
	img := build(t, f.spec())
	layout := "oci:" + filepath.Join(tmp, "layout") + ":stable"
	d := write(t, layout, img)
	archive := "docker-archive:" + filepath.Join(tmp, "ours.tar") + ":fcos/rehydrator:stable"
	write(t, archive, img)
	pushed := "docker://" + reg.Host() + "/fcos/rehydrator:pushed"
	write(t, pushed, img)

	noTLS := []string{"--src-tls-verify=false", "--dest-tls-verify=false"}
	copyTo := func(src, dst string) {
		t.Helper()
		skopeo(t, append(append([]string{"copy", "-q"}, noTLS...), src, dst)...)
	}

	// inspect what we wrote, in each transport
	for _, ref := range []string{layout, archive, pushed} {
		args := []string{ref}
		if ref == pushed {
			args = []string{"--tls-verify=false", ref}
		}
		in := inspect(t, args...)
		if in.Labels[MetadataLabel] == "" || len(in.Layers) != 5 || in.Os != "linux" || in.Architecture != "amd64" {
			t.Errorf("skopeo inspect %s: %+v", ref, in)
		}
		if ref != archive && in.Digest != d {
			t.Errorf("skopeo inspect %s: digest %s, want %s", ref, in.Digest, d)
		}
	}

	// oci: -> docker:// keeps the manifest as it is
	copied := "docker://" + reg.Host() + "/fcos/rehydrator:copied"
	copyTo(layout, copied)
	checkSource(t, f, open(t, copied), d)

	// docker:// -> oci: recompressed with gzip -> docker-archive: (skopeo decompresses) -> oci:
	// (skopeo compresses again). skopeo 1.9.3 refuses to put zstd layers in a docker-archive
	// ("zstd compression is not supported for docker images"), even with
	// --dest-compress-format gzip, hence the gzip step first.
	gzLayout := "oci:" + filepath.Join(tmp, "gz") + ":stable"
	skopeo(t, append(append([]string{"copy", "-q", "--dest-compress-format", "gzip"}, noTLS...), copied, gzLayout)...)
	checkSource(t, f, open(t, gzLayout), "")
	archive2 := "docker-archive:" + filepath.Join(tmp, "skopeo.tar") + ":fcos/rehydrator:copied"
	copyTo(gzLayout, archive2)
	checkSource(t, f, open(t, archive2), "")
	layout2 := "oci:" + filepath.Join(tmp, "layout2") + ":fromarchive"
	copyTo(archive2, layout2)
	checkSource(t, f, open(t, layout2), "")

	// our docker-archive -> docker:// (skopeo recompresses with gzip)
	fromArchive := "docker://" + reg.Host() + "/fcos/rehydrator:fromarchive"
	copyTo(archive, fromArchive)
	checkSource(t, f, open(t, fromArchive), "")

	// oci: -> skopeo dir: keeps the manifest; Open reads that too
	skopeoDir := "dir:" + filepath.Join(tmp, "skopeodir")
	copyTo(layout, skopeoDir)
	checkSource(t, f, open(t, skopeoDir), d)
}
