package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/internal/testregistry"
	"github.com/rehydrator/rehydrator/streammeta"
)

// TestSignedImage signs a built image in a registry and in an OCI layout, proves with the real
// containers/image policy code that podman would admit it, mirrors it with skopeo (signature
// tag included) into a second registry and a layout, and rehydrates from each mirror with the
// first registry gone, signature checked. Then every way a signature can be wrong.
func TestSignedImage(t *testing.T) {
	rel, sm := smallRelease(t)
	work := t.TempDir()
	keys := filepath.Join(work, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	pw := []string{"COSIGN_PASSWORD=fcos signing"}
	mustRunEnv(t, pw, "keygen", "--output-prefix", filepath.Join(keys, "release"))
	// The other key is made by sigstore's own key code, as cosign generate-key-pair makes it.
	gen := exec.Command(policycheckBinary(t), "sigstore-generate", filepath.Join(keys, "other"))
	gen.Env = append(withoutPassword(), "COSIGN_PASSWORD=")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("sigstore-generate: %v %s", err, out)
	}
	key, pub := filepath.Join(keys, "release.key"), filepath.Join(keys, "release.pub")
	otherKey, otherPub := filepath.Join(keys, "other.key"), filepath.Join(keys, "other.pub")
	if head, _ := os.ReadFile(key); !bytes.HasPrefix(head, []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")) {
		t.Fatalf("keygen wrote %.60q", head)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, want 0600", st.Mode().Perm())
	}

	reg := testregistry.Start(t)
	repo := reg.Host() + "/fcos-images"
	regRef := "docker://" + repo + ":stable"
	digest := strings.TrimSpace(string(mustRunEnv(t, pw, "build", rel.Dir, "--output", regRef, "--sign-key", key, "--compression", "gzip", "-q")))
	sigTag := strings.Replace(digest, ":", "-", 1) + ".sig"
	if out := string(mustRun(t, "verify", regRef, "--key", pub)); !strings.Contains(out, digest) || !strings.Contains(out, "identity "+repo) {
		t.Fatalf("verify printed %q", out)
	}

	layoutDir := filepath.Join(work, "fcos-images")
	layoutRef := "oci:" + layoutDir + ":stable"
	ldigest := strings.TrimSpace(string(mustRunEnv(t, pw, "build", rel.Dir, "--output", layoutRef, "--sign-key", key, "--level", "3", "-q")))
	if ldigest == digest {
		t.Fatal("zstd and gzip builds have the same digest")
	}
	if out := string(mustRun(t, "verify", layoutRef, "--key", pub)); !strings.Contains(out, "identity localhost/fcos-images") {
		t.Fatalf("verify printed %q", out)
	}

	t.Run("containers-policy", func(t *testing.T) {
		check := policyChecker(t, work, repo, pub)
		check(regRef, true)
		// Another image under the repository, with no signature.
		skopeoCopy(t, layoutRef, "docker://"+repo+":unsigned")
		check("docker://"+repo+":unsigned", false)
		// Tampered: the first image's signature put where the second's belongs.
		lsigTag := strings.Replace(ldigest, ":", "-", 1) + ".sig"
		skopeoCopy(t, "docker://"+repo+":"+sigTag, "docker://"+repo+":"+lsigTag)
		check("docker://"+repo+":unsigned", false)
		// Signed by a key the policy does not name.
		mustRunEnv(t, []string{"COSIGN_PASSWORD="}, "sign", "docker://"+repo+":unsigned", "--key", otherKey)
		check("docker://"+repo+":unsigned", false)
		mustRun(t, "verify", "docker://"+repo+":unsigned", "--key", otherPub)
		// Signed for another repository: matchRepository refuses it.
		mustRunEnv(t, pw, "sign", "docker://"+repo+":unsigned", "--key", key, "--identity", "quay.io/someone/else")
		check("docker://"+repo+":unsigned", false)
		// Now properly: admitted, whatever else sits in the signature image.
		mustRunEnv(t, pw, "sign", "docker://"+repo+":unsigned", "--key", key)
		check("docker://"+repo+":unsigned", true)
	})

	t.Run("bad input", func(t *testing.T) {
		// The same image without its signature tag (skopeo copies no cosign attachments).
		bare := "oci:" + filepath.Join(work, "bare")
		skopeoCopy(t, layoutRef, bare+":stable")
		rehydrateFails(t, nil, "has no signature", bare+":stable", pub)
		rehydrateFails(t, nil, "verifies with this key", layoutRef, otherPub)
		mustFail(t, nil, "verifies with this key", "verify", regRef, "--key", otherPub)

		// A signature over another digest: the gzip image's signature under the zstd one's tag.
		skopeoCopy(t, "docker://"+repo+":"+sigTag, bare+":"+strings.Replace(ldigest, ":", "-", 1)+".sig")
		rehydrateFails(t, nil, "the signature is for another image", bare+":stable", pub)

		// A key in a certificate is good while the certificate is; an expired one is refused.
		plainKey, validCert, expiredCert := certificateKeys(t, keys)
		mustRun(t, "sign", layoutRef, "--key", plainKey)
		mustRun(t, "verify", layoutRef, "--key", validCert)
		rehydrateFails(t, nil, "expired on", layoutRef, expiredCert)

		// Wrong key types.
		rsaKey := filepath.Join(keys, "rsa.key")
		tool(t, "openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsaKey)
		mustFail(t, nil, "an RSA key (2048 bits)", "sign", bare+":stable", "--key", rsaKey)
		edKey, edPub := filepath.Join(keys, "ed.key"), filepath.Join(keys, "ed.pub")
		tool(t, "openssl", "genpkey", "-algorithm", "ed25519", "-out", edKey)
		tool(t, "openssl", "pkey", "-in", edKey, "-pubout", "-out", edPub)
		rehydrateFails(t, nil, "an ed25519 key", layoutRef, edPub)
		mustFail(t, nil, "an ed25519 key", "sign", bare+":stable", "--key", edKey)
		mustFail(t, nil, "a private key, not a public key", "verify", layoutRef, "--key", key)

		// Wrong or missing passphrase: nothing is built, nothing is signed.
		never := filepath.Join(work, "never")
		mustFail(t, []string{"COSIGN_PASSWORD=wrong"}, "wrong passphrase", "build", rel.Dir, "--output", "oci:"+never+":stable", "--sign-key", key)
		if _, err := os.Stat(never); err == nil {
			t.Fatal("a build refused for its signing key left an image behind")
		}
		mustFail(t, []string{"COSIGN_PASSWORD=wrong"}, "wrong passphrase", "sign", bare+":stable", "--key", key)
		if r := runWithoutPassword(t, "sign", bare+":stable", "--key", key); r.err == nil || !strings.Contains(string(r.stderr), "set COSIGN_PASSWORD") {
			t.Fatalf("sign without a passphrase or terminal: %v %s", r.err, r.stderr)
		}
		// (the only signature there is still the misplaced one)
		rehydrateFails(t, nil, "the signature is for another image", bare+":stable", pub)

		// Transports without a place for a signature.
		archive := filepath.Join(work, "image.tar")
		mustFail(t, pw, "docker-archive cannot hold a signature", "build", rel.Dir, "--output", "docker-archive:"+archive, "--sign-key", key)
		if _, err := os.Stat(archive); err == nil {
			t.Fatal("a refused build left an archive behind")
		}
		mustFail(t, nil, "docker-archive cannot hold a signature", "verify", "docker-archive:"+archive, "--key", pub)
		mustFail(t, nil, "needs --key", "verify", layoutRef)
		mustFail(t, nil, "no such file", "verify", layoutRef, "--key", filepath.Join(keys, "missing.pub"))
	})

	t.Run("offline mirror", func(t *testing.T) {
		mirror := testregistry.Start(t)
		mirrorRef := "docker://" + mirror.Host() + "/fcos-images:stable"
		ociMirror := "oci:" + filepath.Join(work, "mirror")
		skopeoCopy(t, regRef, mirrorRef)
		skopeoCopy(t, "docker://"+repo+":"+sigTag, "docker://"+mirror.Host()+"/fcos-images:"+sigTag)
		skopeoCopy(t, regRef, ociMirror+":stable")
		skopeoCopy(t, "docker://"+repo+":"+sigTag, ociMirror+":"+sigTag)
		reg.Stop() // the mirrors must do without the first registry
		for _, ref := range []string{mirrorRef, ociMirror + ":stable"} {
			out := t.TempDir()
			r := run(t, nil, "rehydrate", out, "--all", "--image", ref, "--verify-key", pub, "--no-progress")
			if r.err != nil {
				t.Fatalf("rehydrate from %s: %v\n%s", ref, r.err, r.stderr)
			}
			if !strings.Contains(string(r.stderr), digest+": signature by "+pub+" verified") {
				t.Fatalf("rehydrate from %s did not report the signature check:\n%s", ref, r.stderr)
			}
			checkSums(t, out, sm)
		}
	})
}

// TestKeygenPrompt: on a terminal keygen asks for the passphrase twice, without echo, and the
// key opens with it. script(1) gives the command a pseudo-terminal.
func TestKeygenPrompt(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Fatal("script not found: install it (Debian: apt-get install bsdutils)")
	}
	dir := t.TempDir()
	// In a script (no terminal, no COSIGN_PASSWORD) keygen fails at once and writes nothing.
	if r := runWithoutPassword(t, "keygen", "--output-prefix", filepath.Join(dir, "script")); r.err == nil || !strings.Contains(string(r.stderr), "set COSIGN_PASSWORD") {
		t.Fatalf("keygen without a terminal or COSIGN_PASSWORD: %v %s", r.err, r.stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed keygen left %v", ents)
	}
	prefix := filepath.Join(dir, "tty")
	cmd := exec.Command(scriptBin, "-qec", bin+" keygen --output-prefix "+prefix, "/dev/null")
	cmd.Env = withoutPassword()
	stdin, _ := cmd.StdinPipe()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Type each answer only once its prompt is there: the terminal drops early input when
	// keygen turns echo off.
	for _, prompt := range []string{"Enter passphrase for", "Enter it again"} {
		waitFor(t, out, prompt)
		stdin.Write([]byte("typed secret\n"))
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("keygen on a terminal: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "typed secret") {
		t.Fatalf("the passphrase was echoed:\n%s", out.String())
	}
	mustFail(t, []string{"COSIGN_PASSWORD=other"}, "wrong passphrase", "sign", "oci:"+filepath.Join(dir, "none"), "--key", prefix+".key")
	r := run(t, []string{"COSIGN_PASSWORD=typed secret"}, "sign", "oci:"+filepath.Join(dir, "none"), "--key", prefix+".key")
	if r.err == nil || !strings.Contains(string(r.stderr), "not an OCI layout") {
		t.Fatalf("sign with the typed passphrase should get past the key to the missing image: %v %s", r.err, r.stderr)
	}
}

// TestKeysInteroperate: sigstore's own key code (what cosign generate-key-pair and cosign
// sign run) reads the keys keygen writes, refuses them with a wrong passphrase, and writes
// keys that sign and verify here.
func TestKeysInteroperate(t *testing.T) {
	pc := policycheckBinary(t)
	dir := t.TempDir()
	sigstore := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(pc, args...)
		cmd.Env = append(withoutPassword(), env...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, pass := range []string{"", "fcos signing"} {
		prefix := filepath.Join(dir, fmt.Sprintf("ours%d", len(pass)))
		env := []string{"COSIGN_PASSWORD=" + pass}
		mustRunEnv(t, env, "keygen", "--output-prefix", prefix)
		if out, err := sigstore(env, "sigstore-read", prefix+".key", prefix+".pub"); err != nil || out != "key ok" {
			t.Fatalf("sigstore cryptoutils reading our key (passphrase %q): %v %s", pass, err, out)
		}
		if _, err := sigstore([]string{"COSIGN_PASSWORD=not it"}, "sigstore-read", prefix+".key", prefix+".pub"); err == nil {
			t.Fatal("sigstore cryptoutils opened our key with a wrong passphrase")
		}

		theirs := filepath.Join(dir, fmt.Sprintf("theirs%d", len(pass)))
		if out, err := sigstore(env, "sigstore-generate", theirs); err != nil {
			t.Fatalf("sigstore-generate: %v %s", err, out)
		}
		// Our reader accepts their key (it gets past the key to the missing image).
		r := run(t, env, "sign", "oci:"+filepath.Join(dir, "none"), "--key", theirs+".key")
		if r.err == nil || !strings.Contains(string(r.stderr), "not an OCI layout") {
			t.Fatalf("sign with a sigstore-made key: %v %s", r.err, r.stderr)
		}
		mustFail(t, []string{"COSIGN_PASSWORD=not it"}, "wrong passphrase", "sign", "oci:"+filepath.Join(dir, "none"), "--key", theirs+".key")
	}
}

// lockedBuffer is written by the command's output copier and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, out *lockedBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), text) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q from the command within 20s; it printed:\n%s", text, out.String())
}

func mustRunEnv(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	r := run(t, env, args...)
	if r.err != nil {
		t.Fatalf("rehydrator %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r.stdout
}

func withoutPassword() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COSIGN_PASSWORD=") {
			env = append(env, kv)
		}
	}
	return env
}

// runWithoutPassword runs with COSIGN_PASSWORD unset and standard input not a terminal.
func runWithoutPassword(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = withoutPassword()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.Bytes(), errb.Bytes(), err}
}

// rehydrateFails runs rehydrate --verify-key, which must fail with a one-line error about want
// and write nothing.
func rehydrateFails(t *testing.T, env []string, want, ref, pub string) {
	t.Helper()
	out := t.TempDir()
	mustFail(t, env, want, "rehydrate", out, "--disk", "openstack", "--image", ref, "--verify-key", pub)
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("rehydrate refused for its signature but left %v", ents)
	}
}

func skopeoCopy(t *testing.T, src, dst string) {
	t.Helper()
	tool(t, "skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst)
}

func checkSums(t *testing.T, dir string, sm *streammeta.Release) {
	t.Helper()
	for _, a := range sm.Artifacts {
		if got := fileSHA(t, filepath.Join(dir, a.Name)); got != a.UncompressedSHA256 {
			t.Fatalf("%s: sha256 %s, stream metadata says %s", a.Name, got, a.UncompressedSHA256)
		}
	}
}

// certificateKeys writes a plain PKCS #8 P-256 key and two self-signed certificates for it,
// one valid now and one that expired yesterday.
func certificateKeys(t *testing.T, dir string) (keyPath, validPath, expiredPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyPath = filepath.Join(dir, "plain.key")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cert := func(name string, from, to time.Time) string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "fcos release signer"}, NotBefore: from, NotAfter: to}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		return p
	}
	now := time.Now()
	return keyPath, cert("valid.crt", now.Add(-time.Hour), now.Add(24*time.Hour)), cert("expired.crt", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
}

var (
	policycheckOnce sync.Once
	policycheckBin  string
	policycheckErr  error
)

// policycheckBinary builds tests/policycheck: upstream containers/image (the library inside
// podman and skopeo) and sigstore's key code, in their own module so that the main module does
// not depend on them.
func policycheckBinary(t *testing.T) string {
	t.Helper()
	policycheckOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rehydrator-policycheck-")
		if err != nil {
			policycheckErr = err
			return
		}
		policycheckBin = filepath.Join(dir, "policycheck")
		cmd := exec.Command("go", "build", "-tags", "containers_image_openpgp,containers_image_storage_stub", "-o", policycheckBin, ".")
		cmd.Dir = filepath.Join("..", "policycheck")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			policycheckErr = &buildError{err, out}
		}
	})
	if policycheckErr != nil {
		t.Fatalf("building tests/policycheck: %v", policycheckErr)
	}
	return policycheckBin
}

// policyChecker returns a function that asks containers/image whether a policy requiring a
// sigstore signature by pub, with signedIdentity matchRepository, admits an image of repo.
func policyChecker(t *testing.T, work, repo, pub string) func(ref string, admitted bool) {
	t.Helper()
	policycheckBinary(t)
	policy := filepath.Join(work, "policy.json")
	os.WriteFile(policy, []byte(`{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "`+repo+`": [{"type": "sigstoreSigned", "keyPath": "`+pub+`", "signedIdentity": {"type": "matchRepository"}}]
    }
  }
}
`), 0o644)
	regd := filepath.Join(work, "registries.d")
	os.MkdirAll(regd, 0o755)
	host := strings.SplitN(repo, "/", 2)[0]
	os.WriteFile(filepath.Join(regd, "rehydrator-test.yaml"), []byte("docker:\n  "+host+":\n    use-sigstore-attachments: true\n"), 0o644)
	return func(ref string, admitted bool) {
		t.Helper()
		out, err := exec.Command(policycheckBin, "-policy", policy, "-registries.d", regd, ref).CombinedOutput()
		if got := err == nil && strings.TrimSpace(string(out)) == "admitted"; got != admitted {
			t.Fatalf("containers/image policy on %s: %s (exit %v), want admitted=%v", ref, bytes.TrimSpace(out), err, admitted)
		}
		if !admitted && !strings.HasPrefix(string(out), "refused: ") {
			t.Fatalf("policycheck %s: %s (%v)", ref, out, err)
		}
	}
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }
