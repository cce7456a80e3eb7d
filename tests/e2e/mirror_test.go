package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/rehydrator/rehydrator/internal/testregistry"
)

// TestOfflineMirror pushes the built image to a real registry, mirrors it with skopeo copy and
// skopeo sync into a second registry, an oci: layout and a dir: tree, stops the first registry
// and rehydrates from every mirror.
func TestOfflineMirror(t *testing.T) {
	_, sm := sharedLayout(t)
	origin := testregistry.Start(t)
	mirror := testregistry.Start(t)
	src := pushShared(t, origin.Host(), "fcos/fcos-images:stable")
	work := t.TempDir()
	plain := []string{"--src-tls-verify=false", "--dest-tls-verify=false"}

	copied := "docker://" + mirror.Host() + "/mirror/fcos-images:stable"
	skopeo(t, append([]string{"copy", "--all", "--quiet"}, append(plain, src, copied)...)...)
	layoutDir := filepath.Join(work, "oci-mirror")
	skopeo(t, append([]string{"copy", "--all", "--quiet"}, append(plain, src, "oci:"+layoutDir+":stable")...)...)
	// sync mirrors every tag of a repository: into the second registry under synced/, and
	// into directories (one skopeo dir: copy per tag) for a machine without any registry.
	skopeo(t, append([]string{"sync", "--all", "--src", "docker", "--dest", "docker"}, append(plain, origin.Host()+"/fcos/fcos-images", mirror.Host()+"/synced")...)...)
	syncDir := filepath.Join(work, "sync")
	skopeo(t, "sync", "--all", "--src", "docker", "--dest", "dir", "--src-tls-verify=false", origin.Host()+"/fcos/fcos-images", syncDir)

	origin.Stop()
	if r := run(t, nil, "list", "--image", src); r.err == nil {
		t.Fatal("the origin registry still answers after Stop: the mirrors would not be proven")
	}

	dirCopy := filepath.Join(syncDir, "fcos-images:stable")
	if _, err := os.Stat(filepath.Join(dirCopy, "manifest.json")); err != nil {
		t.Fatalf("skopeo sync --dest dir made no %s: %v", dirCopy, err)
	}
	for name, ref := range map[string]string{
		"copy to registry": copied,
		"sync to registry": "docker://" + mirror.Host() + "/synced/fcos-images:stable",
		"copy to oci":      "oci:" + layoutDir + ":stable",
		"sync to dir":      "dir:" + dirCopy,
	} {
		t.Run(name, func(t *testing.T) {
			if got := mustRun(t, "print-stream-json", "--image", ref); !bytes.Equal(got, sm.Raw) {
				t.Fatal("print-stream-json differs from the release's stream.json")
			}
			checkOne(t, ref, sm, "openstack")
		})
	}
}
