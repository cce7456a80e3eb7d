package signature

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pass(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCosignKeys reads private keys that cosign wrote (its own test vectors): both PEM
// labels, PKCS #8 and the older SEC 1 payload.
func TestCosignKeys(t *testing.T) {
	for _, name := range []string{"cosign-sigstore.key", "cosign-pkcs8.key", "cosign-legacy-ec.key"} {
		t.Run(name, func(t *testing.T) {
			data := readTestdata(t, name)
			if !IsEncrypted(data) {
				t.Fatal("IsEncrypted = false")
			}
			key, err := ParsePrivateKey(data, pass("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if key.Curve != elliptic.P256() {
				t.Fatalf("curve %s", key.Curve.Params().Name)
			}
			if name == "cosign-legacy-ec.key" {
				pub, err := ParsePublicKey(readTestdata(t, "cosign-legacy-ec.pub"), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if !pub.Equal(&key.PublicKey) {
					t.Fatal("decrypted key's public half is not the one cosign's test pairs with it")
				}
			}
			if _, err := ParsePrivateKey(data, pass("hellO")); !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("wrong passphrase: %v", err)
			}
		})
	}
}

func TestKeyRoundTrip(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, passphrase := range []string{"", "s3cret"} {
		priv, err := MarshalPrivateKey(key, []byte(passphrase))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(priv), "-----BEGIN "+SigstorePEMType+"-----\n") {
			t.Fatalf("private key PEM starts %q", strings.SplitN(string(priv), "\n", 2)[0])
		}
		got, err := ParsePrivateKey(priv, pass(passphrase))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(key) {
			t.Fatal("round trip changed the key")
		}
		if passphrase == "" {
			continue
		}
		// cosign v1's label reads the same.
		old := strings.ReplaceAll(string(priv), SigstorePEMType, CosignPEMType)
		if got, err := ParsePrivateKey([]byte(old), pass(passphrase)); err != nil || !got.Equal(key) {
			t.Fatalf("ENCRYPTED COSIGN PRIVATE KEY: %v", err)
		}
	}
	pub, err := MarshalPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePublicKey(pub, time.Now())
	if err != nil || !got.Equal(&key.PublicKey) {
		t.Fatalf("public key round trip: %v", err)
	}
	// A plain key is read without asking for a passphrase.
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	asked := false
	plain := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if _, err := ParsePrivateKey(plain, func() ([]byte, error) { asked = true; return nil, nil }); err != nil || asked {
		t.Fatalf("plain PKCS #8: %v (asked for a passphrase: %v)", err, asked)
	}
}

func TestWrongKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := GenerateKey()
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	encryptedRSA := func() []byte {
		der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
		enc, err := encrypt(der, nil)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: SigstorePEMType, Bytes: enc})
	}()
	privCases := []struct {
		name string
		data []byte
		want error
		text string
	}{
		{"rsa pkcs8", pkcs8(rsaKey), ErrKeyType, "an RSA key (2048 bits)"},
		{"rsa pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), ErrKeyType, "RSA"},
		{"rsa encrypted like cosign", encryptedRSA, ErrKeyType, "RSA"},
		{"ed25519", pkcs8(edKey), ErrKeyType, "ed25519"},
		{"p384", pkcs8(p384), ErrKeyType, "P-384"},
		{"public key", pkix(&p256.PublicKey), ErrNotKey, ".pub"},
		{"not pem", []byte("hello"), ErrNotKey, "not a PEM file"},
	}
	for _, c := range privCases {
		_, err := ParsePrivateKey(c.data, pass(""))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("private %s: %v, want %v mentioning %q", c.name, err, c.want, c.text)
		}
	}
	pubCases := []struct {
		name string
		data []byte
		want error
		text string
	}{
		{"rsa", pkix(&rsaKey.PublicKey), ErrKeyType, "RSA"},
		{"ed25519", pkix(edPub), ErrKeyType, "ed25519"},
		{"p384", pkix(&p384.PublicKey), ErrKeyType, "P-384"},
		{"private key", pkcs8(p256), ErrNotKey, "a private key"},
		{"not pem", []byte{}, ErrNotKey, "not a PEM file"},
	}
	for _, c := range pubCases {
		_, err := ParsePublicKey(c.data, time.Now())
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("public %s: %v, want %v mentioning %q", c.name, err, c.want, c.text)
		}
	}
}

// TestCertificateKeys: a public key handed out in a certificate is used only while the
// certificate is valid.
func TestCertificateKeys(t *testing.T) {
	key, _ := GenerateKey()
	cert := func(from, to time.Time) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fcos signer"}, NotBefore: from, NotAfter: to}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	now := time.Now()
	if pub, err := ParsePublicKey(cert(now.Add(-time.Hour), now.Add(time.Hour)), now); err != nil || !pub.Equal(&key.PublicKey) {
		t.Fatalf("valid certificate: %v", err)
	}
	_, err := ParsePublicKey(cert(now.Add(-48*time.Hour), now.Add(-24*time.Hour)), now)
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "expired on") {
		t.Fatalf("expired certificate: %v", err)
	}
	if _, err := ParsePublicKey(cert(now.Add(time.Hour), now.Add(2*time.Hour)), now); !errors.Is(err, ErrExpired) {
		t.Fatalf("not yet valid certificate: %v", err)
	}
}

// TestOpenSSLInterop: a key openssl made signs payloads openssl verifies, and the reverse.
func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not found: install it (Debian: apt-get install openssl)")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	keyPath, pubPath := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub")
	run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyPath)
	run("ec", "-in", keyPath, "-pubout", "-out", pubPath)
	keyPEM, _ := os.ReadFile(keyPath)
	pubPEM, _ := os.ReadFile(pubPath)
	key, err := ParsePrivateKey(keyPEM, pass(""))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	s, err := Sign(key, Payload{Identity: "registry.example/fcos", Digest: digest})
	if err != nil {
		t.Fatal(err)
	}
	payloadPath, sigPath := filepath.Join(dir, "payload"), filepath.Join(dir, "sig")
	os.WriteFile(payloadPath, s.Payload, 0o644)
	raw, _ := decodeB64(s.Signature)
	os.WriteFile(sigPath, raw, 0o644)
	run("dgst", "-sha256", "-verify", pubPath, "-signature", sigPath, payloadPath)

	// openssl signs cosign's own payload bytes; we verify.
	cosignPayload := readTestdata(t, "cosign-payload.json")
	os.WriteFile(payloadPath, cosignPayload, 0o644)
	run("dgst", "-sha256", "-sign", keyPath, "-out", sigPath, payloadPath)
	raw, _ = os.ReadFile(sigPath)
	theirs := Signed{Payload: cosignPayload, Signature: encodeB64(raw)}
	p, err := Check(pub, "sha256:fa93b01658e3a5a1686dc3ae55f170d8de487006fb53a28efcd12ab0710a2e5f", []Signed{theirs})
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity != "192.168.64.2:5000/test-repo-2100826901021538654/alpine" {
		t.Fatalf("identity %q", p.Identity)
	}
}

// FuzzParsePrivateKey: any PEM input gives a key or an error, never a panic. Encrypted seeds
// use the empty passphrase of COSIGN_PASSWORD="".
func FuzzParsePrivateKey(f *testing.F) {
	key, _ := GenerateKey()
	enc, _ := MarshalPrivateKey(key, nil)
	der, _ := x509.MarshalECPrivateKey(key)
	f.Add(enc)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der[:len(der)/2]}))
	f.Add([]byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\ne30=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParsePrivateKey(data, pass("")); err == nil && k.Curve != elliptic.P256() {
			t.Fatal("accepted a key that is not P-256")
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	key, _ := GenerateKey()
	pub, _ := MarshalPublicKey(&key.PublicKey)
	f.Add(pub)
	f.Add(pub[:len(pub)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParsePublicKey(data, time.Now()); err == nil && k.Curve != elliptic.P256() {
			t.Fatal("accepted a key that is not P-256")
		}
	})
}
