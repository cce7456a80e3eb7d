package arch

import "testing"

func TestNames(t *testing.T) {
	for _, c := range []struct{ stream, goarch string }{
		{"x86_64", "amd64"}, {"aarch64", "arm64"}, {"ppc64le", "ppc64le"}, {"s390x", "s390x"}, {"riscv64", "riscv64"},
	} {
		if g := GoArch(c.stream); g != c.goarch {
			t.Errorf("GoArch(%q) = %q, want %q", c.stream, g, c.goarch)
		}
		if s := Stream(c.goarch); s != c.stream {
			t.Errorf("Stream(%q) = %q, want %q", c.goarch, s, c.stream)
		}
	}
	if Machine() == "" {
		t.Error("Machine() is empty")
	}
}
