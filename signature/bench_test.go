package signature

import "testing"

// BenchmarkOpenEncryptedKey is the cost of reading a cosign key: scrypt N=32768 r=8 p=1 on
// purpose dominates (32 MiB of memory per open).
func BenchmarkOpenEncryptedKey(b *testing.B) {
	key, _ := GenerateKey()
	pem, err := MarshalPrivateKey(key, []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ParsePrivateKey(pem, pass("pw")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignAndCheck signs one payload and checks it, as sign and verify do per image.
func BenchmarkSignAndCheck(b *testing.B) {
	key, _ := GenerateKey()
	for b.Loop() {
		s, err := Sign(key, Payload{Identity: "r/x", Digest: testDigest})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Check(&key.PublicKey, testDigest, []Signed{s}); err != nil {
			b.Fatal(err)
		}
	}
}
