// Package arch is the project's one mapping between architecture names: stream metadata and
// Fedora spell them as uname does (x86_64, aarch64, ppc64le, s390x), Go and OCI platforms as
// GOARCH does (amd64, arm64, ppc64le, s390x).
package arch

import "runtime"

// names maps the stream-metadata names that differ from GOARCH; the rest are spelled alike.
var names = map[string]string{"x86_64": "amd64", "aarch64": "arm64"}

// GoArch returns the GOARCH (and OCI architecture) of a stream-metadata architecture.
func GoArch(stream string) string {
	if g, ok := names[stream]; ok {
		return g
	}
	return stream
}

// Stream returns the stream-metadata architecture of a GOARCH.
func Stream(goarch string) string {
	for s, g := range names {
		if g == goarch {
			return s
		}
	}
	return goarch
}

// Machine is this program's architecture in stream-metadata spelling.
func Machine() string { return Stream(runtime.GOARCH) }
